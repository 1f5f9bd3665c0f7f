package replica

import (
	"testing"
)

// TestReplicaGoAfterShutdown: a goroutine asked for once Shutdown began is
// not added to the wait group Shutdown waits on (that would race its final
// Wait); its function runs on the caller's goroutine instead.
func TestReplicaGoAfterShutdown(t *testing.T) {
	rs := newLeaseTestCluster(t, openTestStores(t, 1)[0])
	rs.Shutdown()
	ran := false
	rs.Go(func() { ran = true })
	if !ran {
		t.Fatal("Go after Shutdown did not run its function on the caller's goroutine")
	}
}
