package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterResendAfterTakeoverStoredOnce: with R=3, W=2, a message with a
// dt is sent while its coordinator's absence filter answers the shard's
// de-duplication look-ups, and its coordinator is killed. Once another
// replica took the lease over and its own filter answers look-ups (built
// from its copy, fed by the Prepares and catch-up that brought the
// message), the resend of the same message (same dt) is answered with the
// first id: the message is stored once.
func TestClusterResendAfterTakeoverStoredOnce(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})
	cid, coord := convCoordinatedElsewhere(ctx, t, c, tom, jerry, "dedup")
	conv := tom.cl.Conversation(cid)
	const absent = `imnode_store_absent_lookups_total{result="absent"}`
	// warm sends new messages until nd's filter answered a look-up more
	// than it had before.
	warm := func(nd *harness.Node, what string) {
		t.Helper()
		before := metricValue(ctx, t, nd, absent)
		harness.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			sendRetrying(ctx, t, conv, fmt.Sprintf("warm-up %s %d", what, time.Now().UnixNano()))
			if metricValue(ctx, t, nd, absent) == before {
				return fmt.Errorf("%s's absence filter answered no look-up yet", nd.ID())
			}
			return nil
		})
	}
	warm(coord, "before")
	msg := client.NewText(fmt.Sprintf("once %d", time.Now().UnixNano()))
	first, err := conv.Send(ctx, msg)
	mustNoErr(t, err)
	again, err := conv.Send(ctx, msg)
	mustNoErr(t, err)
	if again.ID != first.ID {
		t.Fatalf("resend on the same coordinator answered %s, want %s", again.ID, first.ID)
	}

	coord.Kill(t)
	var next *harness.Node
	harness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		sendRetrying(ctx, t, conv, fmt.Sprintf("after the kill %d", time.Now().UnixNano()))
		if next = coordinatorOf(ctx, t, c, cid); next == nil {
			return fmt.Errorf("no coordinator of %s after %s was killed", cid, coord.ID())
		}
		return nil
	})
	warm(next, "after")
	resent := resendRetrying(ctx, t, conv, msg)
	if resent.ID != first.ID {
		t.Fatalf("resend after the takeover (coordinator %s) answered %s, want %s", next.ID(), resent.ID, first.ID)
	}
	for _, u := range []*user{tom, jerry} {
		if copies := idsOf(ctx, t, u, cid, msg.Content); len(copies) != 1 {
			t.Fatalf("%s's history has the message as %v, want once", u.name, copies)
		}
	}
}
