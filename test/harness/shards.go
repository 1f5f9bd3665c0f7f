package harness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
)

// Replica is one node's copy of a shard, as GET /admin/v1/shards reports it.
type Replica struct {
	Node string
	adminapi.ShardStatus
}

// Replicas asks every running node for its shards and returns them by
// shard number, each list in node ordinal order.
func (c *Cluster) Replicas(ctx context.Context) (map[int][]Replica, error) {
	out := map[int][]Replica{}
	for _, nd := range c.Running() {
		st, err := nd.Admin().Shards(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s shards: %w", nd.id, err)
		}
		for _, s := range st.Shards {
			out[s.Shard] = append(out[s.Shard], Replica{Node: nd.id, ShardStatus: s})
		}
	}
	return out, nil
}

// replicasAgree returns nil when every shard has min(R, running) ready
// replicas on the running nodes, all with the same digest.
func (c *Cluster) replicasAgree(ctx context.Context) error {
	reps, err := c.Replicas(ctx)
	if err != nil {
		return err
	}
	want := min(c.opts.ReplicationFactor, len(c.Running()))
	for _, shard := range slices.Sorted(maps.Keys(reps)) {
		list := reps[shard]
		if len(list) != want {
			return fmt.Errorf("shard %d has %d replicas on running nodes, want %d: %v", shard, len(list), want, list)
		}
		for _, r := range list {
			if !r.Ready {
				return fmt.Errorf("shard %d replica on %s is not ready", shard, r.Node)
			}
			if r.Digest != list[0].Digest {
				return fmt.Errorf("shard %d digests differ: %s has %s (%d keys), %s has %s (%d keys)",
					shard, list[0].Node, list[0].Digest, list[0].Keys, r.Node, r.Digest, r.Keys)
			}
		}
	}
	if len(reps) != c.opts.Shards {
		return fmt.Errorf("%d of %d shards have replicas on running nodes", len(reps), c.opts.Shards)
	}
	return nil
}

// WaitReplicasAgree waits until every shard has min(R, running nodes) ready
// replicas on the running nodes and they all have the same digest (the
// replication guarantee after a fault healed, docs/replication.md). It fails the test after
// timeout with the last difference.
func (c *Cluster) WaitReplicasAgree(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.waitFor(timeout, c.replicasAgree); err != nil {
		t.Fatalf("harness: replicas did not agree within %v: %v", timeout, err)
	}
}

// Pause stops the node's process with SIGSTOP: it keeps its sockets but
// answers nothing, like a node stuck in a long GC pause or a hung disk.
func (nd *Node) Pause(t testing.TB) {
	t.Helper()
	nd.signal(t, syscall.SIGSTOP)
}

// Resume continues a paused node with SIGCONT.
func (nd *Node) Resume(t testing.TB) {
	t.Helper()
	nd.signal(t, syscall.SIGCONT)
}

func (nd *Node) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil || p.exited() {
		t.Fatalf("harness: %s is not running", nd.id)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("harness: signal %s: %v", nd.id, err)
	}
}
