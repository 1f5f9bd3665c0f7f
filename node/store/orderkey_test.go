package store

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Order index entries sort by value descending, then cid ascending, after
// their order's marker; every key decodes back to its value and cid.
func TestStoreOrderIndexKeys(t *testing.T) {
	type entry struct {
		v   int64
		cid string
	}
	want := []entry{{math.MaxInt64, "a"}, {1_700_000_000_001, "a"}, {1_700_000_000_000, "a"},
		{1_700_000_000_000, "a\x00"}, {1_700_000_000_000, "b"}, {1, "z"}, {0, "a"}, {0, "b"}, {-1, "a"}, {math.MinInt64, "a"}}
	marker := OrderIndexPrefix(3, "app", "lm").Bytes()
	keys := [][]byte{marker}
	for _, e := range want {
		keys = append(keys, OrderIndexKey(3, "app", "lm", e.v, e.cid))
	}
	shuffled := slices.Clone(keys)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, bytes.Compare)
	for i := range keys {
		if !bytes.Equal(shuffled[i], keys[i]) {
			t.Fatalf("key %d sorts out of order", i)
		}
		if !bytes.HasPrefix(keys[i], marker) {
			t.Fatalf("key %d outside its order's prefix", i)
		}
	}
	if _, _, m, err := ReadOrderIndexKey(marker); err != nil || !m {
		t.Fatalf("marker decoded as marker %v, %v", m, err)
	}
	for i, e := range want {
		v, cid, m, err := ReadOrderIndexKey(keys[i+1])
		if err != nil || m || v != e.v || cid != e.cid {
			t.Fatalf("entry %d = %d %q marker %v err %v, want %d %q", i, v, cid, m, err, e.v, e.cid)
		}
	}
	if bytes.HasPrefix(OrderIndexKey(3, "app", "updatedAt", 5, "a"), marker) {
		t.Fatal("two orders share a prefix")
	}
	bad := [][]byte{nil, NewKey(3, "app", FamConv).Str("lm").Bytes(), append(OrderIndexKey(3, "app", "lm", 5, "a"), 1),
		OrderIndexPrefix(3, "app", "lm").Str("x").Bytes(), OrderIndexPrefix(3, "app", "lm").Int64(5).Bytes()}
	for i, k := range bad {
		if _, _, _, err := ReadOrderIndexKey(k); err == nil {
			t.Fatalf("bad key %d decoded", i)
		}
	}
}

// DeletesOutright holds for order index entries only, not their marker or
// other families; inOrderIndex sees the family through an app holding
// NUL and 0x01 bytes.
func TestStoreDeletesOutright(t *testing.T) {
	for _, app := range []string{"app", "a\x00\x01b"} {
		entry := OrderIndexKey(3, app, "lm", 7, "c")
		if !DeletesOutright(entry) || !inOrderIndex(entry) {
			t.Fatalf("app %q: an order index entry is not deleted outright", app)
		}
		marker := OrderIndexPrefix(3, app, "lm").Bytes()
		if DeletesOutright(marker) || !inOrderIndex(marker) {
			t.Fatalf("app %q: the marker is deleted outright or not in the index", app)
		}
		msg := NewKey(3, app, FamMsg).Str("c").Bytes()
		if DeletesOutright(msg) || inOrderIndex(msg) {
			t.Fatalf("app %q: a message key counts as the order index", app)
		}
	}
}

// A replicated set of an order index entry that a replicated write deleted
// lately (a late write applied after the one that moved the entry on) is
// left out; once orderDeletesMax other entries were deleted since, it is
// stored (a stale entry the sweeper removes). Other keys are unaffected.
func TestStoreOrderIndexLateSetAfterDelete(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	t.Cleanup(func() { _ = s.Close() })
	key := OrderIndexKey(0, "app", "lm", 5, "c")
	rec := EncodeVersioned(1, false, nil)
	held := func() bool {
		t.Helper()
		_, err := s.Get(key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	apply := func(ops ...Op) {
		t.Helper()
		if err := s.ApplyVersioned(ops); err != nil {
			t.Fatal(err)
		}
	}
	apply(Op{Kind: OpDelete, Key: key}) // the later write, applied first
	apply(Op{Kind: OpSet, Key: key, Value: rec})
	if held() {
		t.Fatal("a set of an entry deleted lately was stored")
	}
	msg := NewKey(0, "app", FamMsg).Str("c").Bytes()
	apply(Op{Kind: OpDelete, Key: msg}, Op{Kind: OpSet, Key: msg, Value: rec})
	if _, err := s.Get(msg); err != nil {
		t.Fatalf("a message key deleted and set again: %v", err)
	}
	for i := range orderDeletesMax {
		apply(Op{Kind: OpDelete, Key: OrderIndexKey(0, "app", "lm", int64(100+i), "d")})
	}
	apply(Op{Kind: OpSet, Key: key, Value: rec})
	if !held() {
		t.Fatalf("a set %d deletes after the entry's was left out", orderDeletesMax)
	}
}

// A set of an order index entry that addOps let through, whose delete
// commits while the set's batch is being committed (a late write and the
// next one committed at once on a replica), is deleted again after it.
func TestStoreOrderIndexSetRacingDelete(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	t.Cleanup(func() { _ = s.Close() })
	other := OrderIndexKey(0, "app", "lm", 1, "d")
	if err := s.ApplyVersioned([]Op{{Kind: OpDelete, Key: other}}); err != nil {
		t.Fatal(err)
	}
	key := OrderIndexKey(0, "app", "lm", 5, "c")
	raced := false
	s.testHookCommit = func() {
		if raced {
			return
		}
		raced = true
		if err := s.ApplyVersioned([]Op{{Kind: OpDelete, Key: key}}); err != nil {
			t.Error(err)
		}
	}
	if err := s.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(1, false, nil)}}); err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the delete did not run during the set's commit")
	}
	if _, err := s.Get(key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the set outlived the delete committed during its commit: %v", err)
	}
}
