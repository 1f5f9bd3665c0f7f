package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterLivePushGatewayCutOffCounted: Z, the coordinator and registry,
// is cut off (peer transport only) from Jerry's gateway Y but still reaches
// X, so writes keep their quorum and Z keeps coordinating, while the pushes
// it sends Y over a connection that stays open are lost without an error.
// Those losses must be counted at Z
// (imnode_presence_pushes_to_cut_off_gateways_total): before the counter,
// Jerry missed every push of the cut with nothing counted anywhere.
func TestClusterLivePushGatewayCutOffCounted(t *testing.T) {
	ls := startLive(t, harness.Options{FaultInjection: true})
	ctx := testCtx(t)
	const series = "imnode_presence_pushes_to_cut_off_gateways_total"
	s := startSenders(ctx, ls.cid, livePace, ls.tom)
	s.awaitEach(t, 30, 20*time.Second)
	ls.c.Partition(t, []*harness.Node{ls.z}, []*harness.Node{ls.y})
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if v := metricValue(ctx, t, ls.z, series); v < 20 {
			return fmt.Errorf("%s at %s = %v, want pushes of the cut counted", series, ls.z.ID(), v)
		}
		return nil
	})
	ls.c.Heal(t)
	ls.c.WaitConverged(t)
	s.awaitEach(t, 30, 30*time.Second)
	acked, _ := s.finish()
	r := awaitLive(t, ls.jerry, ls.cid, acked, func() []*client.Message {
		before, _, _ := liveMessages(ls.jerry, ls.cid)
		return before
	})
	counted := metricValue(ctx, t, ls.z, series)
	t.Logf("gateway cut off: %v; %s at %s: %v", r, series, ls.z.ID(), counted)
	if coord := coordinatorOf(ctx, t, ls.c, ls.cid); coord != ls.z {
		t.Logf("conversation moved to %v during the cut", coord)
	}
}
