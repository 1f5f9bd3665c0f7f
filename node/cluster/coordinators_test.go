package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/transport"
)

// TestCoordinatorsSuspectLast: with every replica live and none suspected,
// Coordinators is the ring's replica list itself (shared, no copy); once a
// call to a replica failed as unreachable, that replica goes last until its
// suspicion expires, and the others keep their order.
func TestCoordinatorsSuspectLast(t *testing.T) {
	nodes := startTestNodes(t, openTestStores(t, 3), func(_ int, cfg *Config) { cfg.SuspectFor = time.Hour })
	c := nodes[0].Cluster
	const shard = 1
	ring := c.Ring().Replicas(shard)
	got := c.Coordinators(shard)
	if !slices.Equal(got, ring) || &got[0] != &ring[0] {
		t.Fatalf("Coordinators(%d) = %v, want the ring's list %v itself", shard, got, ring)
	}

	// The first replica other than this node becomes a suspect.
	i := slices.IndexFunc(ring, func(id string) bool { return id != c.cfg.NodeID })
	suspect := ring[i]
	c.noteCall(suspect, transport.ErrTimeout)
	want := append(slices.Delete(slices.Clone(ring), i, i+1), suspect)
	if got := c.Coordinators(shard); !slices.Equal(got, want) {
		t.Fatalf("with %s suspected: Coordinators(%d) = %v, want %v", suspect, shard, got, want)
	}
	if !slices.Equal(c.Ring().Replicas(shard), ring) {
		t.Fatalf("the ring's list changed to %v", c.Ring().Replicas(shard))
	}

	c.noteCall(suspect, nil) // a success clears the suspicion
	if got := c.Coordinators(shard); !slices.Equal(got, ring) {
		t.Fatalf("suspicion cleared: Coordinators(%d) = %v, want %v", shard, got, ring)
	}
}
