package store

import (
	"bytes"
	"math"
	"slices"
	"testing"
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
