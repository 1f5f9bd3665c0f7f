package membership

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlist's Shutdown stops its transport's listeners, closes its
// shutdown channel and stops its tickers, but waits for none of its own
// goroutines. Most end at once; some end only at their own deadline:
//
//   - a probe in flight waits for its ack until the probe's deadline, the
//     probe interval scaled by the local health score (up to
//     AwarenessMaxMultiplier times: 4 s with the local timings, 8 s by
//     default). A probe of a node that is already gone always waits that
//     long, and after Shutdown no ack can arrive. Its TCP fallback ping and
//     an indirect ping's nack timer end by the same deadline.
//   - a push/pull in flight and the handler of an inbound stream end when
//     the peer answers, or at TCPTimeout.
//
// Such a goroutine still uses the memberlist (and the delegates, so this
// Membership) after Shutdown returned: a test's leak check catches it, and
// the owner may close what the delegates read. So Membership creates the
// memberlist under a goroutine label of its own (runtime/pprof: every
// goroutine memberlist starts, and every goroutine those start, inherits
// it), and Shutdown waits until no goroutine carries the label, polling the
// goroutine profile, for at most lingerBound. The timers memberlist arms
// (time.AfterFunc: ack and suspicion timeouts) carry no label; after
// Shutdown they only delete map entries, or start a goroutine that sees the
// memberlist shut down and returns.

// goroutineLabel is the pprof label key on memberlist's goroutines; its
// value names the Membership (its address), unique in the process.
const goroutineLabel = "imcluster_membership"

// createLabelled creates the memberlist with every goroutine it starts
// labelled for m (see above).
func (m *Membership) createLabelled(mc *memberlist.Config) (*memberlist.Memberlist, error) {
	var ml *memberlist.Memberlist
	var err error
	pprof.Do(context.Background(), pprof.Labels(goroutineLabel, m.labelValue()), func(context.Context) {
		ml, err = memberlist.Create(mc)
	})
	return ml, err
}

func (m *Membership) labelValue() string { return fmt.Sprintf("%p", m) }

// lingerBound is how long Shutdown waits for memberlist's goroutines: the
// longest a probe waits for its ack, or the TCP timeout of a stream.
func lingerBound(mc *memberlist.Config) time.Duration {
	probe := mc.ProbeInterval * time.Duration(max(mc.AwarenessMaxMultiplier, 1))
	return max(probe, mc.TCPTimeout) + time.Second
}

// waitMemberlist waits until no goroutine memberlist started for m is
// left, for at most bound; it reports whether none is.
func (m *Membership) waitMemberlist(bound time.Duration) bool {
	needle := fmt.Appendf(nil, "%q:%q", goroutineLabel, m.labelValue())
	deadline := time.Now().Add(bound)
	var buf bytes.Buffer
	for sleep := time.Millisecond; ; sleep = min(2*sleep, 50*time.Millisecond) {
		buf.Reset()
		// debug=1 prints each stack's labels as {"key":"value", ...}.
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		if !bytes.Contains(buf.Bytes(), needle) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(sleep)
	}
}
