package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// testNet connects in-process Sets, each on its own real Pebble store,
// through their request and message handlers: the fault-injecting
// transport of these tests. A node marked down neither sends nor answers;
// a dropped (to, method) pair fails the call without running it, or after
// the receiver ran it (the answer is lost), then optionally cutting the
// sender off too (it dies before it learns the outcome).
type testNet struct {
	rg *ring.Ring

	mu   sync.Mutex
	sets map[string]*Set
	down map[string]bool
	drop map[dropKey]dropMode
	// cutOff["a>b"] makes a believe b is cut off (a probe to it timed
	// out) while calls still go through: a loaded machine.
	cutOff map[string]bool
	// delay holds calls of (to, method) back before they run.
	delay map[dropKey]time.Duration
	// recordCalls makes NoteCall maintain cutOff.
	recordCalls bool
}

type dropMode int

const (
	dropBefore dropMode = iota + 1
	dropAfter
	dropAfterAndCut
)

type dropKey struct {
	to     string
	method uint16
}

func (n *testNet) fault(from, to string, method uint16) (down bool, mode dropMode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down[from] || n.down[to], n.drop[dropKey{to, method}]
}

func (n *testNet) setDown(id string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[id] = down
}

// setDrop sets the drop mode of (to, method); 0 ends dropping.
func (n *testNet) setDrop(to string, method uint16, mode dropMode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if mode != 0 {
		n.drop[dropKey{to, method}] = mode
	} else {
		delete(n.drop, dropKey{to, method})
	}
}

type netPeers struct {
	self string
	n    *testNet
}

func (p netPeers) Ring() *ring.Ring { return p.n.rg }
func (p netPeers) Live(id string) bool {
	down, _ := p.n.fault(p.self, id, 0)
	return !down
}
func (p netPeers) MemberActive(id string) bool { return p.Live(id) }
func (p netPeers) Coordinators(s uint16) []string {
	return slices.DeleteFunc(slices.Clone(p.n.rg.Replicas(int(s))), func(id string) bool { return !p.Live(id) })
}
func (p netPeers) Suspected(string) bool { return false }
func (p netPeers) Reachable(id string) bool {
	p.n.mu.Lock()
	cut := p.n.cutOff[p.self+">"+id]
	p.n.mu.Unlock()
	return !cut && p.Live(id)
}

// NoteCall marks a peer cut off after a timeout and clears it after a
// success, as the cluster does, when the net records calls.
func (p netPeers) NoteCall(to string, err error) {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	switch {
	case !p.n.recordCalls:
	case err == nil:
		delete(p.n.cutOff, p.self+">"+to)
	case errors.Is(err, transport.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		p.n.cutOff[p.self+">"+to] = true
	}
}
func (p netPeers) Draining() bool  { return false }
func (p netPeers) CaughtUp() error { return nil }
func (p netPeers) Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	down, mode := p.n.fault(p.self, to, method)
	if down || mode == dropBefore {
		return nil, transport.ErrUnavailable
	}
	p.n.mu.Lock()
	rs, delay := p.n.sets[to], p.n.delay[dropKey{to, method}]
	p.n.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, transport.ErrTimeout
		}
	}
	out, err := rs.HandleRequest(ctx, &transport.Request{From: p.self, Method: method, Payload: slices.Clone(payload)})
	if mode == dropAfterAndCut {
		p.n.setDown(p.self, true)
	}
	if mode != 0 {
		return nil, transport.ErrTimeout
	}
	if err != nil {
		var we *wire.Error
		return nil, &transport.RemoteError{Peer: to, Message: err.Error(), Temporary: errors.As(err, &we) && we.Temporary}
	}
	return out, nil
}

// CallFunc runs Call on a goroutine of the calling Set (its Shutdown waits
// for it), bounded by timeout and the Set's life, as the transport bounds
// its calls.
func (p netPeers) CallFunc(to string, method uint16, payload []byte, timeout time.Duration, done func([]byte, error)) {
	p.n.mu.Lock()
	rs := p.n.sets[p.self]
	p.n.mu.Unlock()
	payload = slices.Clone(payload)
	rs.Go(func() {
		ctx, cancel := context.WithTimeout(rs.ctx, timeout)
		defer cancel()
		done(p.Call(ctx, to, method, payload))
	})
}
func (p netPeers) Send(to string, method uint16, payload []byte) error {
	if down, mode := p.n.fault(p.self, to, method); down || mode != 0 {
		return transport.ErrUnavailable
	}
	p.n.mu.Lock()
	rs := p.n.sets[to]
	p.n.mu.Unlock()
	return rs.HandleMessage(p.self, method, slices.Clone(payload))
}

// newTestNet starts Sets a, b and c on real stores, one shard replicated
// on all three, W = 2, and returns the net and the shard's replicas in
// preference order.
func newTestNet(t *testing.T, maxPayload int) (*testNet, []string) {
	t.Helper()
	return newTestNetConfig(t, func(c *Config) { c.MaxWritePayload = maxPayload })
}

// newTestNetConfig is newTestNet with each Set's Config changed by set.
func newTestNetConfig(t testing.TB, set func(*Config)) (*testNet, []string) {
	t.Helper()
	rg, err := ring.New(ring.Config{Shards: 1, ReplicationFactor: 3}, 1,
		[]ring.Member{{ID: "a", State: ring.StateActive}, {ID: "b", State: ring.StateActive}, {ID: "c", State: ring.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{rg: rg, sets: map[string]*Set{}, down: map[string]bool{}, drop: map[dropKey]dropMode{}, cutOff: map[string]bool{}, delay: map[dropKey]time.Duration{}}
	stores := openTestStores(t, 3)
	for i, id := range []string{"a", "b", "c"} {
		cfg := DefaultLocalConfig()
		cfg.LeaseDuration = 400 * time.Millisecond
		cfg.RequestTimeout = 500 * time.Millisecond
		cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum = id, stores[i], 1, 2
		cfg.Logger = slog.New(slog.DiscardHandler)
		set(&cfg)
		rs, err := New(cfg, netPeers{self: id, n: n})
		if err != nil {
			t.Fatal(err)
		}
		n.sets[id] = rs
	}
	for _, id := range []string{"a", "b", "c"} {
		rs := n.sets[id]
		rs.OnRing(nil, rg)
		rs.CatchUpAlone()
		rs.Start()
		t.Cleanup(rs.Shutdown)
	}
	return n, rg.Replicas(0)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitTerm waits until node id writes under a term and returns it.
func (n *testNet) waitTerm(t *testing.T, id string) uint64 {
	t.Helper()
	var epoch uint64
	waitFor(t, id+"'s term", func() bool {
		var ok bool
		epoch, ok = n.sets[id].writeEpoch(0)
		return ok
	})
	return epoch
}

func testKey(name string) []byte {
	return store.NewKey(0, "app", store.FamMsg).Str("c").Str(name).Bytes()
}

// put writes key=val through node id's cluster KV.
func (n *testNet) put(id string, kvs ...string) error {
	b := &store.Batch{}
	for i := 0; i < len(kvs); i += 2 {
		b.Set(testKey(kvs[i]), []byte(kvs[i+1]))
	}
	return n.sets[id].KV().Commit(b)
}

// visible returns the nodes whose own store serves key.
func (n *testNet) visible(key string) []string {
	var out []string
	for _, id := range []string{"a", "b", "c"} {
		if _, err := n.sets[id].LocalGet(testKey(key)); err == nil {
			out = append(out, id)
		}
	}
	return out
}

func (n *testNet) pending(t *testing.T, id string) int {
	t.Helper()
	c := 0
	err := n.sets[id].st.ScanPending(0, 0, 0, func(store.PendingWrite, int) (bool, error) { c++; return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReplicaQuorumWriteCommits(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p := reps[0]
	n.waitTerm(t, p)
	if err := n.put(p, "m1", "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.sets[p].LocalGet(testKey("m1")); err != nil {
		t.Fatalf("the coordinator does not serve its acknowledged write: %v", err)
	}
	waitFor(t, "the commit notices", func() bool {
		return len(n.visible("m1")) == 3 && n.pending(t, "a")+n.pending(t, "b")+n.pending(t, "c") == 0
	})
}

// The commit notices of a write ride on the next write to the same
// replicas, which apply them in the batch that stores it pending: with
// notices never sent on their own, the first write becomes visible on every
// replica once the second is acknowledged, and the second stays pending.
func TestReplicaQuorumNoticesRideOnNextWrite(t *testing.T) {
	n, reps := newTestNetConfig(t, func(c *Config) { c.CommitNoticeDelay = time.Hour })
	p := reps[0]
	n.waitTerm(t, p)
	for _, id := range reps[1:] {
		n.setDrop(id, wire.CommitNotice, dropBefore)
	}
	if err := n.put(p, "m1", "one"); err != nil {
		t.Fatal(err)
	}
	// The replica that answered after the quorum may hand its notice over
	// a moment later: wait until both are owed.
	waitFor(t, "both notices owed", func() bool {
		n.sets[p].outNotices.mu.Lock()
		defer n.sets[p].outNotices.mu.Unlock()
		return len(n.sets[p].outNotices.peers) == 2
	})
	if got := n.visible("m1"); len(got) != 1 {
		t.Fatalf("m1 visible on %v before the next write; want the coordinator only", got)
	}
	if err := n.put(p, "m2", "two"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m1 visible everywhere", func() bool { return len(n.visible("m1")) == 3 })
	for _, id := range reps[1:] {
		if c := n.pending(t, id); c != 1 {
			t.Fatalf("%s holds %d pending writes; want m2 only", id, c)
		}
	}
}

// A write whose quorum failed is visible nowhere; after its coordinator is
// cut off, another node takes over and stores the resend; the failed
// write, still pending on its old coordinator, never shows up, even when
// that node coordinates again.
func TestReplicaQuorumFailedWriteNeverVisible(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p, q := reps[0], reps[1]
	n.waitTerm(t, p)
	for _, id := range reps[1:] {
		n.setDrop(id, wire.Prepare, dropBefore)
	}
	err := n.put(p, "dedup", "first", "m1", "first")
	if !errors.Is(err, ErrQuorum) {
		t.Fatalf("write without a quorum = %v, want ErrQuorum", err)
	}
	if v := n.visible("dedup"); len(v) != 0 {
		t.Fatalf("a write whose quorum failed is visible on %v", v)
	}
	// The coordinator is cut off before it could resolve; the others take
	// over and take the resend.
	n.setDown(p, true)
	for _, id := range reps[1:] {
		n.setDrop(id, wire.Prepare, 0)
	}
	waitFor(t, "a takeover", func() bool { _, ok := n.sets[q].writeEpoch(0); return ok })
	if _, err := n.sets[q].KV().Get(testKey("dedup")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the new coordinator reads the failed write: %v", err)
	}
	if err := n.put(q, "dedup", "second", "m2", "second"); err != nil {
		t.Fatal(err)
	}
	// The old coordinator comes back and takes the shard again (the new
	// one is cut off): its pending write belongs to an ended term.
	n.setDown(q, true)
	n.setDown(p, false)
	waitFor(t, "the old coordinator's new term", func() bool { _, ok := n.sets[p].writeEpoch(0); return ok })
	if v, err := n.sets[p].KV().Get(testKey("dedup")); err != nil || string(v) != "second" {
		t.Fatalf("dedup key = %q, %v; want the resend's", v, err)
	}
	if v := n.visible("m1"); len(v) != 0 {
		t.Fatalf("the failed write came back on %v", v)
	}
	if n.pending(t, p) != 0 {
		t.Fatal("the ended term's pending write was not dropped")
	}
}

// A write that reached W replicas but whose coordinator died before it
// learnt so is in doubt: the next holder rolls it forward before it serves
// the shard.
func TestReplicaQuorumTakeoverResolvesInDoubt(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p, q := reps[0], reps[1]
	n.waitTerm(t, p)
	n.setDrop(q, wire.Prepare, dropAfterAndCut)
	n.setDrop(reps[2], wire.Prepare, dropBefore)
	if err := n.put(p, "m1", "maybe"); err == nil {
		t.Fatal("a write whose coordinator was cut off succeeded")
	}
	n.setDrop(q, wire.Prepare, 0)
	n.setDrop(reps[2], wire.Prepare, 0)
	waitFor(t, "a takeover", func() bool { _, ok := n.sets[q].writeEpoch(0); return ok })
	if v, err := n.sets[q].KV().Get(testKey("m1")); err != nil || string(v) != "maybe" {
		t.Fatalf("the new coordinator reads %q, %v; want the in-doubt write rolled forward", v, err)
	}
	if v := n.visible("m1"); len(v) < 2 {
		t.Fatalf("the rolled-forward write is on %v, want W = 2 replicas", v)
	}
}

func TestReplicaQuorumWriteTooLarge(t *testing.T) {
	n, reps := newTestNet(t, 64<<10)
	p := reps[0]
	n.waitTerm(t, p)
	big := string(make([]byte, 64<<10))
	err := n.put(p, "small", "x", "big", big)
	if !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("over-large write = %v, want ErrTooLarge", err)
	}
	if v := n.visible("small"); len(v) != 0 {
		t.Fatalf("part of an over-large write is visible on %v", v)
	}
	for _, id := range reps {
		if n.pending(t, id) != 0 {
			t.Fatalf("an over-large write is pending on %s", id)
		}
	}
	if _, ok := n.sets[p].writeEpoch(0); !ok {
		t.Fatal("an over-large write made the coordinator step down")
	}
	if err := n.put(p, "small", "x"); err != nil {
		t.Fatalf("a small write after it: %v", err)
	}
}

// A coordinator whose probes to its peers time out (a loaded machine, no
// partition) keeps its lease while it can renew it, and goes on writing.
func TestReplicaLeaseKeptWhenProbesTimeOut(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p := reps[0]
	epoch := n.waitTerm(t, p)
	n.mu.Lock()
	for _, id := range reps[1:] {
		n.cutOff[p+">"+id] = true
	}
	n.mu.Unlock()
	// Several renewal periods (a quarter lease each) and more than a lease.
	deadline := time.Now().Add(3 * n.sets[p].leaseDuration())
	for i := 0; time.Now().Before(deadline); i++ {
		if err := n.put(p, fmt.Sprintf("m%d", i), "x"); err != nil {
			t.Fatalf("write %d while probes time out: %v", i, err)
		}
		if e, ok := n.sets[p].writeEpoch(0); !ok || e != epoch {
			t.Fatalf("the coordinator lost its lease or term (%d, %v; was %d)", e, ok, epoch)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A renewal round that was in flight when a write stepped down does not
// extend the lease: the next one is a fresh acquisition with a resolution.
func TestReplicaLeaseRenewalAfterStepDown(t *testing.T) {
	st := openTestStores(t, 1)[0]
	c := newLeaseTestCluster(t, st)
	sent := c.now()
	c.lease.mu.Lock()
	c.lease.s[0].until, c.lease.s[0].epoch = sent.Add(time.Second), 3
	c.lease.mu.Unlock()
	w := &leaseWant{shard: 0, waiter: make(chan struct{})}
	c.stepDown(0, 3, 42)
	c.finishLease(w, sent, true)
	if c.holdsLease(0) {
		t.Fatal("a renewal extended the lease of a coordinator that stepped down")
	}
	if _, ok := c.writeEpoch(0); ok {
		t.Fatal("the coordinator writes again without a resolution")
	}
}

// A write whose caller gives up while it is in flight is settled by its
// coordinator in the background; meanwhile the shard answers nothing, so a
// read right after the caller's error (a resend's de-duplication check)
// sees the write committed.
func TestReplicaQuorumAbandonedWriteSettlesFirst(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p := reps[0]
	epoch := n.waitTerm(t, p)
	n.mu.Lock()
	for _, id := range reps[1:] {
		n.delay[dropKey{id, wire.Prepare}] = 200 * time.Millisecond
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	b := &store.Batch{}
	b.Set(testKey("dedup"), []byte("first"))
	if err := n.sets[p].write(ctx, 0, b.Ops(), false); !errors.Is(err, ErrQuorum) {
		t.Fatalf("write abandoned by its caller = %v, want the retryable ErrQuorum", err)
	}
	if v, err := n.sets[p].KV().Get(testKey("dedup")); err != nil || string(v) != "first" {
		t.Fatalf("read right after = %q, %v; want the abandoned write, settled", v, err)
	}
	if e, ok := n.sets[p].writeEpoch(0); !ok || e != epoch {
		t.Fatalf("the coordinator stepped down (%d, %v; was %d)", e, ok, epoch)
	}
}

// Lease requests that answer later than their quarter-lease deadline (a
// loaded peer) cost the coordinator its lease, but do not make it think its
// peers are cut off: once they answer in time again it takes its shard
// back.
func TestReplicaLeaseSlowAnswersAreNotACutOff(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p := reps[0]
	n.mu.Lock()
	n.recordCalls = true
	n.mu.Unlock()
	n.waitTerm(t, p)
	slow := func(on bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, id := range reps[1:] {
			if on {
				n.delay[dropKey{id, wire.Lease}] = n.sets[p].leaseDuration() / 2
			} else {
				delete(n.delay, dropKey{id, wire.Lease})
			}
		}
	}
	slow(true)
	waitFor(t, "the lease to run out", func() bool { return !n.sets[p].holdsLease(0) })
	slow(false)
	for _, id := range reps[1:] {
		if !n.sets[p].peers.Reachable(id) {
			t.Errorf("%s counts %s cut off after slow lease answers", p, id)
		}
	}
	n.waitTerm(t, p)
}

// TestReplicaOpVersionKept: a write whose ops carry versions (an outbox
// effect, versioned when its command ran) keeps them, at the coordinator
// and forwarded to it (wire.Write), for sets, deletions and field updates:
// the older write applied after the newer one leaves the newer values, and
// the coordinator's clock moves past the versions it saw.
func TestReplicaOpVersionKept(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p, other := reps[0], reps[1]
	n.waitTerm(t, p)
	older := n.sets[other].clk.Reserve(3)
	// The newer versions are ten minutes ahead of p's clock (the other
	// node's clock saw a version from a node running ahead).
	n.sets[other].clk.Observe(uint64(time.Now().Add(10*time.Minute).UnixMilli()) << HLCLogicalBits)
	newer := n.sets[other].clk.Reserve(3)
	write := func(via string, first uint64, val string, deleteD bool) {
		t.Helper()
		b := &store.Batch{}
		b.Set(testKey("s"), []byte(val))
		if deleteD {
			b.Delete(testKey("d"))
		} else {
			b.Set(testKey("d"), []byte(val))
		}
		b.MergeFields(testKey("f"), []store.Field{{Name: "x", Value: []byte(val)}})
		for i := range b.Ops() {
			b.Ops()[i].Version = first + uint64(i)
		}
		if err := n.sets[via].KV().Commit(b); err != nil {
			t.Fatalf("write via %s: %v", via, err)
		}
	}
	write(other, newer, "new", true)
	write(p, older, "old", false)
	write(other, older, "old", false)
	// Before any read here, which observes versions too.
	if v := n.sets[p].clk.Now(); v <= newer+2 {
		t.Fatalf("the coordinator's clock %d is not past the versions it applied (%d)", v, newer+2)
	}
	s, err := n.sets[p].LocalGet(testKey("s"))
	if err != nil || string(s) != "new" {
		t.Fatalf("s = %q, %v; want the newer write's", s, err)
	}
	if d, err := n.sets[p].LocalGet(testKey("d")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("d = %q, %v; want deleted by the newer write", d, err)
	}
	f, err := n.sets[p].LocalGet(testKey("f"))
	if err != nil {
		t.Fatal(err)
	}
	fields, err := store.DecodeFields(f)
	if err != nil || len(fields) != 1 || string(fields[0].Value) != "new" {
		t.Fatalf("f = %+v, %v; want the newer field", fields, err)
	}
}

// A write whose quorum its coordinator meets alone (W = 1) is made visible
// there in one store batch, with no pending record, and still reaches the
// other replicas, pending there until its commit notice makes it visible.
func TestReplicaQuorumAloneOneBatch(t *testing.T) {
	n, reps := newTestNetConfig(t, func(c *Config) { c.WriteQuorum = 1 })
	p := reps[0]
	n.waitTerm(t, p)
	const writes = 5
	for i := range writes {
		key := fmt.Sprintf("m%d", i)
		if err := n.put(p, key, "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.sets[p].LocalGet(testKey(key)); err != nil {
			t.Fatalf("the coordinator does not serve its acknowledged write %s: %v", key, err)
		}
	}
	if pend, unpended := n.sets[p].st.WriteCounts(); pend != 0 || unpended != writes {
		t.Fatalf("the coordinator stored %d writes pending and %d in one batch; want 0 and %d", pend, unpended, writes)
	}
	waitFor(t, "the other replicas", func() bool {
		for i := range writes {
			if len(n.visible(fmt.Sprintf("m%d", i))) != 3 {
				return false
			}
		}
		return n.pending(t, "a")+n.pending(t, "b")+n.pending(t, "c") == 0
	})
	for _, id := range reps[1:] {
		if pend, _ := n.sets[id].st.WriteCounts(); pend != writes {
			t.Fatalf("replica %s held %d writes pending; want %d", id, pend, writes)
		}
	}
}

// A coordinator refuses to store a write under a term that ended in its
// own store (another node began a later one there), as a replica's Prepare
// does, whether it meets its quorum alone (W = 1, the one-batch commit) or
// not (W = 2, its pending copy; the other replicas, still in the old term,
// would accept it): the write is visible nowhere, the coordinator steps
// down, and after its next resolution the resend is stored once.
func TestReplicaQuorumRefusesEndedTerm(t *testing.T) {
	for _, quorum := range []int{1, 2} {
		t.Run(fmt.Sprintf("W=%d", quorum), func(t *testing.T) {
			n, reps := newTestNetConfig(t, func(c *Config) { c.WriteQuorum = quorum })
			p := reps[0]
			epoch := n.waitTerm(t, p)
			if err := n.sets[p].beginTerm(0, epoch+1); err != nil {
				t.Fatal(err)
			}
			b := &store.Batch{}
			b.Set(testKey("dedup"), []byte("first"))
			if err := n.sets[p].coordinateWrite(context.Background(), 0, b.Ops(), false); !errors.Is(err, ErrQuorum) {
				t.Fatalf("write under an ended term = %v, want ErrQuorum", err)
			}
			if v := n.visible("dedup"); len(v) != 0 {
				t.Fatalf("a write under an ended term is visible on %v", v)
			}
			if e, ok := n.sets[p].writeEpoch(0); ok && e == epoch {
				t.Fatal("the coordinator goes on writing under the ended term")
			}
			if err := n.put(p, "dedup", "second"); err != nil {
				t.Fatal(err)
			}
			if e := n.waitTerm(t, p); e <= epoch+1 {
				t.Fatalf("the coordinator writes under term %d; want one after %d", e, epoch+1)
			}
			waitFor(t, "the resend everywhere", func() bool { return len(n.visible("dedup")) == 3 })
			for _, id := range reps {
				if v, err := n.sets[id].LocalGet(testKey("dedup")); err != nil || string(v) != "second" {
					t.Fatalf("%s reads %q, %v; want the resend", id, v, err)
				}
			}
		})
	}
}
