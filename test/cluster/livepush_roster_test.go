package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// Live pushes across roster changes: a client shard's registry replicas
// move (a node joins or drains) while Tom sends, and Jerry, whose socket
// stays open, must receive every acknowledged message live, in order and
// once.

// placement returns the ring of the given node ids, all active, with the
// cluster's shard count and R: the placement the nodes converge to.
func placement(t *testing.T, c *harness.Cluster, nodeIDs ...string) *ring.Ring {
	t.Helper()
	opts := c.Options()
	members := make([]ring.Member, 0, len(nodeIDs))
	for _, id := range nodeIDs {
		members = append(members, ring.Member{ID: id, State: ring.StateActive})
	}
	rg, err := ring.New(ring.Config{Shards: opts.Shards, ReplicationFactor: opts.ReplicationFactor}, 1, members)
	mustNoErr(t, err)
	return rg
}

// clientWhere returns a client id for name whose client shard's replicas
// in rg satisfy ok.
func clientWhere(t *testing.T, rg *ring.Ring, name string, ok func(replicas []string) bool) string {
	t.Helper()
	for range 10000 {
		id := uid(name)
		if ok(rg.Replicas(ring.ClientShard(rg.Shards(), apps.DevAppID, id))) {
			return id
		}
	}
	t.Fatalf("no client id for %s with the wanted registry replicas", name)
	return ""
}

// convWhere creates conversations of owner with member until one is
// coordinated by coord and its shard's replicas in rg satisfy ok.
func convWhere(t *testing.T, c *harness.Cluster, owner, member *user, coord *harness.Node, rg *ring.Ring,
	ok func(replicas []string) bool) string {
	t.Helper()
	for range 5 {
		cid, _ := convCoordinatedBy(testCtx(t), t, c, owner, member, "roster", func(nd *harness.Node) bool { return nd == coord })
		if ok(rg.Replicas(ring.ConversationShard(rg.Shards(), apps.DevAppID, cid))) {
			return cid
		}
	}
	t.Fatalf("no conversation coordinated by %s with the wanted replicas", coord.ID())
	return ""
}

// receivedLive waits until u received every message of acked on its
// session, which must never have dropped, and checks order and once.
func receivedLive(t *testing.T, scenario string, u *user, cid string, acked []*client.Message) {
	t.Helper()
	r := awaitLive(t, u, cid, acked, func() []*client.Message {
		before, _, _ := liveMessages(u, cid)
		return before
	})
	if slices.ContainsFunc(u.in.all(), func(ev client.Event) bool { _, ok := ev.(client.DisconnectEvent); return ok }) {
		t.Errorf("%s: %s's session dropped", scenario, u.name)
	}
	checkLive(t, scenario, r)
}

func nodeIDs(nodes ...*harness.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, nd := range nodes {
		out = append(out, nd.ID())
	}
	return out
}

// TestClusterLivePushRegistryMovesOnDrain: four nodes, R=3. Jerry's
// client shard is replicated by D (the node that drains), X and Y, not by
// C, which coordinates the conversation and so relays Jerry's pushes to
// the registry on D, X or Y. D drains while Tom sends: Jerry's client
// shard moves to C, which from then on routes his pushes through its own
// registry, one that never heard of Jerry until his gateway re-registers
// there after the roster change.
func TestClusterLivePushRegistryMovesOnDrain(t *testing.T) {
	c := harness.Start(t, 4, harness.Options{ReplicationFactor: 3, WriteQuorum: 2})
	x, y, cn, d := c.Node(0), c.Node(1), c.Node(2), c.Node(3)
	before := placement(t, c, nodeIDs(x, y, cn, d)...)
	after := placement(t, c, nodeIDs(x, y, cn)...)
	tom := connect(t, c, x, x, "Tom")
	jerry := connectID(t, c, y, y, "Jerry", clientWhere(t, before, "Jerry", func(r []string) bool {
		return slices.Contains(r, d.ID()) && !slices.Contains(r, cn.ID())
	}))
	cid := convWhere(t, c, tom, jerry, cn, after, func(r []string) bool { return r[0] == cn.ID() })

	ctx := testCtx(t)
	s := startSenders(ctx, cid, livePace, tom)
	s.awaitEach(t, 30, 20*time.Second)
	adm := d.Admin()
	_, err := adm.StartDrain(ctx)
	mustNoErr(t, err)
	harness.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		ds, err := adm.Drain(ctx)
		if err != nil {
			return err
		}
		if !ds.Done {
			return fmt.Errorf("drain of %s: %d shards left", d.ID(), ds.ShardsLeft)
		}
		return nil
	})
	d.Stop(t)
	c.WaitConverged(t)
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := coordinatorOf(ctx, t, c, cid); got != cn {
			return fmt.Errorf("conversation coordinated by %v, want %s", got, cn.ID())
		}
		return nil
	})
	s.awaitEach(t, liveAfter, 30*time.Second)
	acked, failed := s.finish()
	t.Logf("drain: %d sends failed (retryable, not acknowledged)", len(failed))
	logPresenceMetrics(t, c, "drain")
	receivedLive(t, "registry moves on drain", jerry, cid, acked)
}

// TestClusterLivePushScaleUp: three nodes, R=3, and a fourth, W, joins
// while Tom sends. Jerry's client shard lands on W first and leaves X,
// which coordinates the conversation before and after: X relays Jerry's
// pushes to W's new registry from the moment it sees W placed. Mary logs
// in on W as soon as it is up and gets 50 messages from Tom: pushes to a
// client of a gateway that just joined.
func TestClusterLivePushScaleUp(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{ReplicationFactor: 3, WriteQuorum: 2})
	x, y, z := c.Node(0), c.Node(1), c.Node(2)
	wID := c.Options().NodeIDPrefix + "3"
	after := placement(t, c, x.ID(), y.ID(), z.ID(), wID)
	tom := connect(t, c, x, x, "Tom")
	jerry := connectID(t, c, y, y, "Jerry", clientWhere(t, after, "Jerry", func(r []string) bool {
		return r[0] == wID && !slices.Contains(r, x.ID())
	}))
	cid := convWhere(t, c, tom, jerry, x, after, func(r []string) bool { return r[0] == x.ID() })

	ctx := testCtx(t)
	s := startSenders(ctx, cid, livePace, tom)
	s.awaitEach(t, 30, 20*time.Second)
	w := c.AddNode(t)
	if w.ID() != wID {
		t.Fatalf("added node %s, want %s", w.ID(), wID)
	}
	mary := connect(t, c, w, w, "Mary")
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: []string{mary.id}})
	mustNoErr(t, err)
	var toMary []*client.Message
	for i := range 50 {
		m, _ := sendRetrying(ctx, t, conv, fmt.Sprintf("to Mary %d", i))
		toMary = append(toMary, m)
	}
	s.awaitEach(t, liveAfter, 30*time.Second)
	acked, failed := s.finish()
	t.Logf("scale-up: %d sends failed (retryable, not acknowledged)", len(failed))
	logPresenceMetrics(t, c, "scale-up")
	receivedLive(t, "scale-up, Jerry (registry moved to the new node)", jerry, cid, acked)
	receivedLive(t, "scale-up, Mary (on the new node)", mary, conv.ID(), toMary)
	if got := coordinatorOf(ctx, t, c, cid); got != x {
		t.Logf("scale-up: the conversation moved to %v", got)
	}
}
