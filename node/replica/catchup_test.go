package replica

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// putMany writes count keys named prefix0.. through node id, per keys a
// write.
func (n *testNet) putMany(t *testing.T, id, prefix string, count, per int) {
	t.Helper()
	for i := 0; i < count; i += per {
		var kvs []string
		for j := i; j < min(i+per, count); j++ {
			kvs = append(kvs, fmt.Sprintf("%s%d", prefix, j), "v")
		}
		if err := n.put(id, kvs...); err != nil {
			t.Fatalf("write %s%d at %s: %v", prefix, i, id, err)
		}
	}
}

// A replica that missed the writes of two terms (it was cut off) takes the
// shard over: it copies from the granter only the keys written since its
// last catch-up from it, not the shard, and holds every acknowledged write.
// When the granter's change log no longer reaches back that far, the
// takeover compares digests instead and still gets them all.
func TestReplicaTakeoverCopiesChangesSinceLastCatchUp(t *testing.T) {
	for _, trimmed := range []bool{false, true} {
		t.Run(fmt.Sprintf("trimmed=%v", trimmed), func(t *testing.T) {
			n, reps := newTestNet(t, 0)
			p, q, r := reps[0], reps[1], reps[2]
			epoch1 := n.waitTerm(t, p)
			const shardKeys = 1000
			n.putMany(t, p, "base", shardKeys, 50)
			// q catches up from both others (what a node's start does):
			// digests, then a cursor in each one's change log.
			ctx := context.Background()
			waitFor(t, "the base on every replica", func() bool { return len(n.visible(fmt.Sprint("base", shardKeys-1))) == 3 })
			for _, src := range []string{p, r} {
				if err := n.sets[q].pull(ctx, 0, src); err != nil {
					t.Fatal(err)
				}
			}
			qm := n.sets[q].met
			if d := counterValue(t, qm.catchUps.WithLabelValues("digest")); d != 2 {
				t.Fatalf("first catch-ups by digest: %v, want 2", d)
			}

			// q is cut off; p writes under its term, steps down after a
			// failed write, and writes under its next term.
			n.setDown(q, true)
			n.putMany(t, p, "one", 20, 5)
			n.setDrop(r, wire.Prepare, dropBefore)
			if err := n.put(p, "failed", "x"); err == nil {
				t.Fatal("a write without a quorum succeeded")
			}
			n.setDrop(r, wire.Prepare, 0)
			waitFor(t, "p's next term", func() bool { e, ok := n.sets[p].writeEpoch(0); return ok && e > epoch1 })
			n.putMany(t, p, "two", 20, 5)
			// Every write visible on r (its last commit notice may still
			// be on its way; a pending one would be rolled forward instead).
			waitFor(t, "the commit notices at r", func() bool { return n.pending(t, r) == 0 })
			if trimmed {
				if _, err := n.sets[r].st.TrimChanges(time.Now(), 0, 0); err != nil {
					t.Fatal(err)
				}
			}

			// p goes, q comes back and takes over from r.
			keysBefore := counterValue(t, qm.syncKeys)
			changesBefore := counterValue(t, qm.catchUps.WithLabelValues("changes"))
			digestBefore := counterValue(t, qm.catchUps.WithLabelValues("digest"))
			n.setDown(p, true)
			n.setDown(q, false)
			n.waitTerm(t, q)
			for _, prefix := range []string{"one", "two"} {
				for i := range 20 {
					if _, err := n.sets[q].LocalGet(testKey(fmt.Sprint(prefix, i))); err != nil {
						t.Fatalf("the new coordinator lacks %s%d: %v", prefix, i, err)
					}
				}
			}
			copied := counterValue(t, qm.syncKeys) - keysBefore
			changes := counterValue(t, qm.catchUps.WithLabelValues("changes")) - changesBefore
			digest := counterValue(t, qm.catchUps.WithLabelValues("digest")) - digestBefore
			t.Logf("takeover copied %v keys (changes %v, digest %v catch-ups)", copied, changes, digest)
			if !trimmed {
				if changes < 1 || digest != 0 {
					t.Fatalf("catch-ups by changes %v, by digest %v; want only changes", changes, digest)
				}
				if copied != 40 {
					t.Fatalf("the takeover copied %v keys, want the 40 written since the cursor", copied)
				}
				return
			}
			if digest < 1 {
				t.Fatalf("no digest catch-up after the granter's log was trimmed (changes %v)", changes)
			}
		})
	}
}

// The change log serves pages: a catch-up of more keys than one page holds
// copies each of them, a key written again once more (its two entries fall
// in different pages: a page sends a key once).
func TestReplicaChangeScanPages(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p, q := reps[0], reps[1]
	n.waitTerm(t, p)
	from := n.sets[q].st.ChangeHead()
	const keys = 2*syncPage + 10
	n.putMany(t, p, "k", keys, 100)
	waitFor(t, "the writes on q", func() bool { return len(n.visible(fmt.Sprint("k", keys-1))) == 3 })
	// Write the first keys again: they are logged twice, copied once
	// per page.
	n.putMany(t, p, "k", 10, 10)
	// The rewrite is acknowledged once two replicas hold it: q holds it
	// once its records are p's (the same versions), none left pending.
	waitFor(t, "the rewrite on q", func() bool {
		for i := range 10 {
			key := testKey(fmt.Sprint("k", i))
			pv, perr := n.sets[p].st.Get(key)
			qv, qerr := n.sets[q].st.Get(key)
			if perr != nil || qerr != nil || !bytes.Equal(pv, qv) {
				return false
			}
		}
		return n.pending(t, q) == 0
	})
	copied, head, err := n.sets[p].pullChanges(context.Background(), 0, q, from, nil)
	if err != nil {
		t.Fatal(err)
	}
	if head.Incarnation != from.Incarnation || head.Seq <= from.Seq {
		t.Fatalf("head %+v after %+v", head, from)
	}
	if copied != keys+10 {
		t.Fatalf("copied %d records for %d keys", copied, keys)
	}
	if _, _, err := n.sets[p].pullChanges(context.Background(), 0, q, store.ChangeCursor{Incarnation: from.Incarnation + 1}, nil); err != errChangesGone {
		t.Fatalf("a cursor of another run: %v, want errChangesGone", err)
	}
}

// A shard placed on a node again before the node deleted its old copy
// drops the pending writes that copy held from before (a takeover of the
// new placement would roll forward those of the highest term it is told
// of), and keeps a pending write of the new placement that arrived first.
func TestReplicaReplacedShardDropsStalePending(t *testing.T) {
	st := openTestStores(t, 1)[0]
	rs := newLeaseTestCluster(t, st) // node a, 4 shards on a, b and c
	placement := func(epoch uint64, ids ...string) *ring.Ring {
		var ms []ring.Member
		for _, id := range ids {
			ms = append(ms, ring.Member{ID: id, State: ring.StateActive})
		}
		rg, err := ring.New(ring.Config{Shards: 4, ReplicationFactor: 3}, epoch, ms)
		if err != nil {
			t.Fatal(err)
		}
		return rg
	}
	placed, gone, again := placement(1, "a", "b", "c"), placement(2, "b", "c", "d"), placement(3, "a", "b", "c")
	rs.OnRing(nil, placed)
	stale := store.PendingWrite{Epoch: 9, ID: rs.clk.Now(), Ops: []store.Op{{Kind: store.OpSet, Key: testKey("old"),
		Value: store.EncodeVersioned(1, false, []byte("old"))}}}
	if err := st.PutPending(0, stale); err != nil {
		t.Fatal(err)
	}
	rs.OnRing(placed, gone)
	// A write of the new placement reaches a before its ring does.
	fresh := store.PendingWrite{Epoch: 2, ID: rs.clk.Now(), Ops: []store.Op{{Kind: store.OpSet, Key: testKey("new"),
		Value: store.EncodeVersioned(2, false, []byte("new"))}}}
	if err := st.PutPending(0, fresh); err != nil {
		t.Fatal(err)
	}
	rs.OnRing(gone, again)
	var left []uint64
	if err := st.ScanPending(0, 0, 0, func(w store.PendingWrite, _ int) (bool, error) {
		left = append(left, w.Epoch)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []uint64{2}) {
		t.Fatalf("pending writes of terms %v after the shard was placed here again, want only the new placement's [2]", left)
	}
}

// BenchmarkTakeoverCatchUp measures one catch-up of a 200,000-key shard
// from a replica holding 100 records this node lacks (what a takeover does
// per granter): by the source's change log after this node's cursor, and
// by digests (no cursor: both sides read the whole shard, and the
// differing buckets are copied), at the default sync rate limit.
func BenchmarkTakeoverCatchUp(b *testing.B) {
	const shardKeys, missed = 200_000, 100
	for _, method := range []string{"changes", "digest"} {
		b.Run(method, func(b *testing.B) {
			n, reps := newTestNetConfig(b, func(c *Config) { c.AntiEntropyInterval = time.Hour })
			q, r := n.sets[reps[1]], n.sets[reps[2]]
			val := make([]byte, 200)
			for i := 0; i < shardKeys; i += 1000 {
				var ops []store.Op
				for j := i; j < i+1000; j++ {
					ops = append(ops, store.Op{Kind: store.OpSet, Key: testKey(fmt.Sprint("base", j)),
						Value: store.EncodeVersioned(uint64(j+1), false, val)})
				}
				for _, rs := range []*Set{q, r} {
					if err := rs.st.ApplyVersioned(ops); err != nil {
						b.Fatal(err)
					}
				}
			}
			ctx := context.Background()
			if _, err := q.catchUpFrom(ctx, 0, r.cfg.NodeID, nil); err != nil { // the first catch-up
				b.Fatal(err)
			}
			keys := counterValue(b, q.met.syncKeys)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				var ops []store.Op
				for j := range missed {
					ops = append(ops, store.Op{Kind: store.OpSet, Key: testKey(fmt.Sprint("new", i, "-", j)),
						Value: store.EncodeVersioned(r.clk.Now(), false, val)})
				}
				if err := r.st.ApplyVersioned(ops); err != nil {
					b.Fatal(err)
				}
				if method == "digest" {
					q.sync.forgetCursors(0)
				}
				b.StartTimer()
				if _, err := q.catchUpFrom(ctx, 0, r.cfg.NodeID, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((counterValue(b, q.met.syncKeys)-keys)/float64(b.N), "keys/op")
		})
	}
}

// Anti-entropy compares a shard that had no write here for a whole round
// over every record, which renews this node's change-log cursors for it;
// a shard written meanwhile is compared over settled records as before and
// gets none.
func TestReplicaQuietShardRenewsCursors(t *testing.T) {
	n, reps := newTestNetConfig(t, func(c *Config) { c.AntiEntropyInterval = time.Hour })
	p, q, r := reps[0], reps[1], reps[2]
	n.waitTerm(t, p)
	n.putMany(t, p, "k", 100, 10)
	waitFor(t, "the writes everywhere", func() bool { return n.pending(t, q)+n.pending(t, r) == 0 })
	qs := n.sets[q]
	hasCursors := func() bool {
		_, _, okp := qs.sync.cursor(0, p)
		_, _, okr := qs.sync.cursor(0, r)
		return okp && okr
	}
	qs.sync.forgetCursors(0) // those of its first catch-up
	qs.sync.antiEntropy()    // the first round only notes the head
	n.putMany(t, p, "busy", 1, 1)
	waitFor(t, "the write on q", func() bool { return n.pending(t, q) == 0 })
	qs.sync.antiEntropy()
	if _, _, ok := qs.sync.cursor(0, p); ok {
		t.Fatal("a round over a shard written since the last one took a cursor")
	}
	qs.sync.antiEntropy() // quiet since the last round
	if !hasCursors() {
		t.Fatal("a round over a quiet shard took no cursor")
	}
	before := counterValue(t, qs.met.catchUps.WithLabelValues("changes"))
	if _, err := qs.catchUpFrom(context.Background(), 0, r, nil); err != nil {
		t.Fatal(err)
	}
	if counterValue(t, qs.met.catchUps.WithLabelValues("changes")) != before+1 {
		t.Fatal("the catch-up after the renewal did not use the change log")
	}
}
