package replica

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// fixedPeers is a roster that never changes: a placement and every member
// live, with no transport (calls fail as unavailable).
type fixedPeers struct{ rg *ring.Ring }

func (p fixedPeers) Ring() *ring.Ring               { return p.rg }
func (p fixedPeers) Live(string) bool               { return true }
func (p fixedPeers) MemberActive(string) bool       { return true }
func (p fixedPeers) Coordinators(s uint16) []string { return p.rg.Replicas(int(s)) }
func (p fixedPeers) Suspected(string) bool          { return false }
func (p fixedPeers) Reachable(string) bool          { return true }
func (p fixedPeers) NoteCall(string, error)         {}
func (p fixedPeers) Draining() bool                 { return false }
func (p fixedPeers) CaughtUp() error                { return nil }
func (p fixedPeers) Call(context.Context, string, uint16, []byte) ([]byte, error) {
	return nil, transport.ErrUnavailable
}
func (p fixedPeers) CallFunc(_ string, _ uint16, _ []byte, _ time.Duration, done func([]byte, error)) {
	done(nil, transport.ErrUnavailable)
}
func (p fixedPeers) Send(string, uint16, []byte) error { return transport.ErrUnavailable }

// openTestStores opens n stores in temporary directories (closed in
// t.Cleanup).
func openTestStores(t testing.TB, n int) []*store.Store {
	t.Helper()
	var out []*store.Store
	for range n {
		st, err := store.Open(store.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		out = append(out, st)
	}
	return out
}

// newLeaseTestCluster returns an unstarted Set of node a on st whose
// placement has three members a, b and c (every shard on all three).
func newLeaseTestCluster(t *testing.T, st *store.Store) *Set {
	t.Helper()
	rg, err := ring.New(ring.Config{Shards: 4, ReplicationFactor: 3}, 1,
		[]ring.Member{{ID: "a", State: ring.StateActive}, {ID: "b", State: ring.StateActive}, {ID: "c", State: ring.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultLocalConfig()
	cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum, cfg.Logger = "a", st, 4, 2, slog.New(slog.DiscardHandler)
	rs, err := New(cfg, fixedPeers{rg: rg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Shutdown)
	return rs
}

func TestReplicaLeaseGrants(t *testing.T) {
	st := openTestStores(t, 1)[0]
	c := newLeaseTestCluster(t, st)
	l := c.leaseDuration()
	now := time.Now()
	grant := func(shard uint16, cand string, at time.Time) (bool, string) {
		c.lease.mu.Lock()
		defer c.lease.mu.Unlock()
		return c.grantLocked(shard, cand, at)
	}
	if ok, prev := grant(0, "b", now); !ok || prev != "" {
		t.Fatalf("first grant = %v, %q", ok, prev)
	}
	if ok, prev := grant(0, "c", now.Add(l/2)); ok || prev != "b" {
		t.Fatalf("grant to c while b holds = %v, %q; want refused, holder b", ok, prev)
	}
	if ok, prev := grant(0, "b", now.Add(l/2)); !ok || prev != "b" {
		t.Fatalf("renewal by b = %v, %q", ok, prev)
	}
	if ok := c.acceptsReplicate(0, "c"); ok {
		t.Fatal("a replicated write from c accepted while b holds the lease")
	}
	if !c.acceptsReplicate(0, "b") || !c.acceptsReplicate(1, "c") {
		t.Fatal("a replicated write from the holder (or of a shard without a lease) refused")
	}
	// The renewal runs a lease from when it was granted.
	if ok, _ := grant(0, "c", now.Add(l+l/4)); ok {
		t.Fatal("grant to c before b's renewed lease ran out")
	}
	if ok, prev := grant(0, "c", now.Add(l/2+l+time.Millisecond)); !ok || prev != "b" {
		t.Fatalf("grant to c after b's lease ran out = %v, %q; want granted, previous holder b", ok, prev)
	}
	// A release ends the grant at once.
	c.lease.mu.Lock()
	c.releaseGrantLocked(0, "b", now.Add(2*l)) // not the holder: no effect
	c.lease.mu.Unlock()
	if ok, _ := grant(0, "b", now.Add(2*l)); ok {
		t.Fatal("a release by a node that does not hold the lease ended c's grant")
	}
	c.lease.mu.Lock()
	c.releaseGrantLocked(0, "c", now.Add(2*l))
	c.lease.mu.Unlock()
	if ok, prev := grant(0, "b", now.Add(2*l)); !ok || prev != "c" {
		t.Fatalf("grant after c released = %v, %q", ok, prev)
	}
	if q := c.leaseQuorum(3); q != 2 {
		t.Fatalf("lease quorum of 3 replicas = %d, want 2", q)
	}
	if q := c.leaseQuorum(4); q != 3 {
		t.Fatalf("lease quorum of 4 replicas = %d, want 3 (a majority)", q)
	}
}

// A node that granted leases to other nodes grants nothing after a restart
// until those grants may have run out; one that never granted starts at once.
func TestReplicaLeaseGrantsAfterRestart(t *testing.T) {
	st := openTestStores(t, 1)[0]
	fresh := newLeaseTestCluster(t, st)
	if ok, _ := fresh.grantLocked(0, "b", time.Now()); !ok {
		t.Fatal("a node that never granted a lease refuses after start")
	}

	c := newLeaseTestCluster(t, st)
	var e wire.Enc
	e.Shards([]uint16{1})
	d := wire.Dec{B: e.B}
	resp, err := c.serveLease("b", &d)
	if err != nil {
		t.Fatal(err)
	}
	rd := wire.Dec{B: resp}
	if n := rd.Count(); n != 1 || !rd.Bool() || rd.Str() != "" || rd.Done("lease") != nil {
		t.Fatalf("lease answer %x: want one grant", resp)
	}
	if _, err := st.Get(leaseMarkerKey); err != nil {
		t.Fatalf("no grant marker after granting to another node: %v", err)
	}

	restarted := newLeaseTestCluster(t, st)
	start := time.Now()
	until := restarted.lease.noGrantUntil
	if !until.After(start) || until.After(start.Add(restarted.leaseDuration())) {
		t.Fatalf("after a restart grants resume at %v, want within a lease of %v", until, start)
	}
	if ok, _ := restarted.grantLocked(2, "c", start); ok {
		t.Fatal("a restarted node granted a lease while its earlier grants may still run")
	}
	if ok, _ := restarted.grantLocked(2, "c", until); !ok {
		t.Fatal("a restarted node still refuses after its earlier grants ran out")
	}
	// The marker sorts after every shard: no shard scan sees it.
	if !hasNoShardKey(t, st) {
		t.Fatal("the grant marker shows up in a shard scan")
	}
}

func hasNoShardKey(t *testing.T, st *store.Store) bool {
	t.Helper()
	empty := true
	for _, sh := range []uint16{0, 1, 2, 3, 0xffff} {
		if err := st.ScanShard(sh, func(_, _ []byte) (bool, error) {
			empty = false
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return empty
}

// A replica that refuses a grant names the holder: requests for the shard
// go there for a while, and the node does not keep asking for the lease.
func TestReplicaLeaseHint(t *testing.T) {
	c := newLeaseTestCluster(t, openTestStores(t, 1)[0])
	w := &leaseWant{shard: 2}
	c.noteHolders([]*leaseWant{w}, []bool{false}, []string{"b"})
	if h := c.KnownHolder(2); h != "b" {
		t.Fatalf("known holder = %q, want b", h)
	}
	if c.ensureLease(2) {
		t.Fatal("ensureLease acquired a lease another replica said b holds")
	}
	c.lease.mu.Lock()
	tried := c.lease.s[2].last != ""
	c.lease.mu.Unlock()
	if tried {
		t.Fatal("ensureLease tried to acquire a lease another replica said b holds")
	}
	if h := c.KnownHolder(1); h != "" {
		t.Fatalf("known holder of an unnamed shard = %q", h)
	}
	// A grant this node made itself wins over the hint.
	c.lease.mu.Lock()
	c.grantLocked(2, "c", time.Now())
	c.lease.mu.Unlock()
	if h := c.KnownHolder(2); h != "c" {
		t.Fatalf("known holder = %q, want c (granted here)", h)
	}
}

// A fresh lease whose catch-up failed leaves the catch-up owed: the
// granters already name this node as the last holder, so the next
// acquisition must not take their word for it.
func TestReplicaLeaseCatchUpOwed(t *testing.T) {
	c := newLeaseTestCluster(t, openTestStores(t, 1)[0])
	sent := time.Now()
	w := &leaseWant{shard: 3, fresh: true, catchUp: true, waiter: make(chan struct{})}
	c.finishLease(w, sent, false)
	c.lease.mu.Lock()
	owed := c.lease.s[3].catchUpOwed
	c.lease.mu.Unlock()
	if !owed {
		t.Fatal("a failed catch-up is not owed")
	}
	w = &leaseWant{shard: 3, fresh: true, catchUp: true, waiter: make(chan struct{})}
	c.finishLease(w, sent, true)
	c.lease.mu.Lock()
	owed = c.lease.s[3].catchUpOwed
	c.lease.mu.Unlock()
	if owed {
		t.Fatal("a completed catch-up is still owed")
	}
}
