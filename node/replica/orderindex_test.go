package replica

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// lmKey is the lm order index entry of conversation "c" at ts.
func lmKey(ts int64) []byte { return store.OrderIndexKey(0, "app", "lm", ts, "c") }

// sendAt writes through node id what a send to conversation "c" writes to
// the order index: its lm entry moves from prev to ts, beside the message.
func (n *testNet) sendAt(id string, prev, ts int64) error {
	b := &store.Batch{}
	b.Set(testKey(fmt.Sprint("m", ts)), []byte("hi"))
	b.Delete(lmKey(prev))
	b.Set(lmKey(ts), nil)
	return n.sets[id].KV().Commit(b)
}

// lmRecords returns the values of the lm records node id's store holds,
// tombstones included (raw Pebble records), and how many are tombstones.
func (n *testNet) lmRecords(t *testing.T, id string) (values []int64, tombstones int) {
	t.Helper()
	err := n.sets[id].st.ScanPrefix(store.OrderIndexPrefix(0, "app", "lm").Bytes(), false, func(k, v []byte) (bool, error) {
		_, tomb, _, err := store.DecodeVersioned(v)
		if err != nil {
			return false, err
		}
		if tomb {
			tombstones++
			return true, nil
		}
		ts, _, _, err := store.ReadOrderIndexKey(k)
		values = append(values, ts)
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return values, tombstones
}

// TestReplicaOrderIndexDeleteLeavesNoRecord: every send moves its
// conversation's lm entry; after 200 of them each replica's store holds
// the one current entry, not a tombstone per message.
func TestReplicaOrderIndexDeleteLeavesNoRecord(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p := reps[0]
	n.waitTerm(t, p)
	const sends = 200
	for ts := int64(1); ts <= sends; ts++ {
		if err := n.sendAt(p, ts-1, ts); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the commit notices", func() bool {
		return n.pending(t, "a")+n.pending(t, "b")+n.pending(t, "c") == 0
	})
	for _, id := range reps {
		values, tombs := n.lmRecords(t, id)
		if tombs != 0 || !slices.Equal(values, []int64{sends}) {
			t.Fatalf("%s holds lm entries %v and %d tombstones after %d sends; want only %d", id, values, tombs, sends, sends)
		}
	}
	// The order index's deletes stay deletes on the wire; anything else
	// deleted is still a versioned tombstone.
	vops, err := n.sets[p].versionOps(0, []store.Op{{Kind: store.OpDelete, Key: lmKey(1)}, {Kind: store.OpDelete, Key: testKey("x")},
		{Kind: store.OpDelete, Key: store.OrderIndexPrefix(0, "app", "lm").Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	if vops[0].Kind != store.OpDelete || vops[1].Kind != store.OpSet || vops[2].Kind != store.OpSet {
		t.Fatalf("versioned ops of an entry, a message and a marker delete: kinds %d %d %d, want delete, set, set",
			vops[0].Kind, vops[1].Kind, vops[2].Kind)
	}
}

// TestReplicaOrderIndexStaleEntryAfterRepair: a replica that missed a
// send's move of the lm entry keeps the old entry (stale, at a lower
// value: queries skip it); a repair from it does not bring the entry back
// to the coordinator, which deleted it lately, and the sweeper's delete of
// it removes it from every replica.
func TestReplicaOrderIndexStaleEntryAfterRepair(t *testing.T) {
	n, reps := newTestNet(t, 0)
	p, r := reps[0], reps[2]
	n.waitTerm(t, p)
	if err := n.sendAt(p, 0, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first entry on every replica", func() bool {
		for _, id := range reps {
			if v, _ := n.lmRecords(t, id); !slices.Equal(v, []int64{1}) {
				return false
			}
		}
		return true
	})
	n.setDrop(r, wire.Prepare, dropBefore)
	if err := n.sendAt(p, 1, 2); err != nil {
		t.Fatal(err)
	}
	n.setDrop(r, wire.Prepare, 0)
	waitFor(t, "the second send visible on the coordinator and its quorum peer", func() bool {
		for _, id := range reps[:2] {
			if v, _ := n.lmRecords(t, id); !slices.Equal(v, []int64{2}) {
				return false
			}
		}
		return true
	})
	if v, _ := n.lmRecords(t, r); !slices.Equal(v, []int64{1}) {
		t.Fatalf("the replica that missed the send holds lm entries %v, want [1]", v)
	}

	ctx := context.Background()
	if _, _, err := n.sets[p].Repair(ctx, 0, r, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.sets[r].Repair(ctx, 0, p, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	// The coordinator deleted the entry lately: it leaves the copy out.
	// The replica that missed the send keeps its stale entry beside the
	// current one it copied.
	for id, want := range map[string][]int64{p: {2}, r: {2, 1}} {
		if v, tombs := n.lmRecords(t, id); !slices.Equal(v, want) || tombs != 0 {
			t.Fatalf("after the repairs %s holds lm entries %v and %d tombstones, want %v", id, v, tombs, want)
		}
	}

	// The sweeper's tidy deletes the stale entry: gone everywhere.
	b := &store.Batch{}
	b.Delete(lmKey(1))
	if err := n.sets[p].KV().Commit(b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stale entry gone from every replica", func() bool {
		for _, id := range reps {
			if v, tombs := n.lmRecords(t, id); !slices.Equal(v, []int64{2}) || tombs != 0 {
				return false
			}
		}
		return true
	})
}

// A Prepare may carry the outright delete of an order index entry, and no
// other delete: a replica refuses one of any other key (or of the index's
// marker), which would vanish without a tombstone.
func TestReplicaWireOrderIndexDelete(t *testing.T) {
	for _, c := range []struct {
		key []byte
		ok  bool
	}{
		{store.OrderIndexKey(7, "app", "lm", 5, "c"), true},
		{store.OrderIndexPrefix(7, "app", "lm").Bytes(), false},
		{store.NewKey(7, "app", store.FamMsg).Str("c").Bytes(), false},
	} {
		w := store.PendingWrite{Epoch: 3, ID: 9, Ops: []store.Op{{Kind: store.OpDelete, Key: c.key}}}
		_, got, _, err := decodeWrite(&wire.Dec{B: writePayload(7, w)})
		if (err == nil) != c.ok || (c.ok && !opsEqual(got.Ops, w.Ops)) {
			t.Fatalf("delete of %x in a Prepare: %+v, %v; accepted want %v", c.key, got, err, c.ok)
		}
	}
}
