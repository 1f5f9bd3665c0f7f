package membership

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// labelled reports whether a goroutine memberlist started for m is running
// with fn (if not empty) on its stack.
func labelled(tb testing.TB, m *Membership, fn string) bool {
	tb.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		tb.Fatal(err)
	}
	label := fmt.Sprintf("%q:%q", goroutineLabel, m.labelValue())
	for rec := range strings.SplitSeq(buf.String(), "\n\n") {
		if strings.Contains(rec, label) && strings.Contains(rec, fn) {
			return true
		}
	}
	return false
}

// TestMembershipShutdownWaitsForProbes: memberlist's own Shutdown returns
// while a probe of a node that is gone still waits for its ack (until the
// probe's deadline); Membership.Shutdown returns only when no goroutine
// memberlist started is left, so nothing of it outlives the owner (the
// package's goleak check caught such a probe about once in six runs of a
// node test).
func TestMembershipShutdownWaitsForProbes(t *testing.T) {
	ms := startCluster(t, 2)
	if err := ms[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if labelled(t, ms[1], "") {
		t.Fatal("a memberlist goroutine outlived Shutdown")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !labelled(t, ms[0], "memberlist.(*Memberlist).probeNode") {
		if time.Now().After(deadline) {
			t.Fatal("no probe of the dead node within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := ms[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if labelled(t, ms[0], "") {
		t.Fatal("a memberlist goroutine outlived Shutdown")
	}
}
