package store

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestStoreKeyOrder(t *testing.T) {
	ints := []int64{math.MinInt64, -5, -1, 0, 1, 2, 1 << 40, math.MaxInt64}
	for i := 1; i < len(ints); i++ {
		a := NewKey(1, "app", FamMsg).Str("c").Int64(ints[i-1])
		b := NewKey(1, "app", FamMsg).Str("c").Int64(ints[i])
		if bytes.Compare(a, b) >= 0 {
			t.Fatalf("int64 %d does not sort before %d", ints[i-1], ints[i])
		}
	}
	strs := []string{"", "\x00", "\x00\x00", "\x00a", "a", "a\x00", "ab", "b"}
	for i := 1; i < len(strs); i++ {
		a := NewKey(1, "app", FamConv).Str(strs[i-1])
		b := NewKey(1, "app", FamConv).Str(strs[i])
		if bytes.Compare(a, b) >= 0 {
			t.Fatalf("%q does not sort before %q", strs[i-1], strs[i])
		}
	}
	// A conversation's messages are one range: no other conversation's key
	// falls between them.
	lo := NewKey(3, "app", FamMsg).Str("conv")
	hi := PrefixEnd(lo)
	other := NewKey(3, "app", FamMsg).Str("conv2").Int64(5)
	if bytes.Compare(other, lo) >= 0 && bytes.Compare(other, hi) < 0 {
		t.Fatal("key of conv2 falls inside the range of conv")
	}
}

func TestStoreKeyRoundTrip(t *testing.T) {
	tests := []struct {
		app, cid, mid string
		ts            int64
	}{
		{"app", "5a5d7433c3422b31ed845e76", "qNkRkFWOeSqP65S9fDyHJw", 1700000000000},
		{"a\x00b", "_tmp:x\x00", "", -7},
		{"", "", "\xff\x00\x01", math.MaxInt64},
	}
	for _, tt := range tests {
		k := NewKey(65535, tt.app, FamMsg).Str(tt.cid).Int64(tt.ts).Str(tt.mid)
		r, shard, app, fam := ReadKey(k)
		cid, ts, mid := r.Str(), r.Int64(), r.Str()
		if err := r.Err(); err != nil {
			t.Fatalf("decode %q: %v", k, err)
		}
		if shard != 65535 || app != tt.app || fam != FamMsg || cid != tt.cid || ts != tt.ts || mid != tt.mid {
			t.Fatalf("round trip mismatch: %d %q %c %q %d %q", shard, app, fam, cid, ts, mid)
		}
	}
}

func TestStoreKeyReaderRejectsGarbage(t *testing.T) {
	for _, k := range [][]byte{nil, {1}, {0, 1, 'a'}, {0, 1, 0, 1, 'm', tagInt64, 1}, {0, 1, 0, 7}} {
		r, _, _, _ := ReadKey(k)
		r.Str()
		r.Int64()
		if r.Err() == nil {
			t.Fatalf("key %x decoded without error", k)
		}
	}
}

func openMem(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open(Config{Dir: "/db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreCommitScanReopen(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	b := s.NewBatch()
	for i := range 5 {
		b.Set(NewKey(0, "a", FamMsg).Str("c").Int64(int64(i)), []byte{byte(i)})
	}
	b.Set(NewKey(0, "a", FamConv).Str("c"), []byte("conv"))
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	defer func() { _ = s.Close() }()
	v, err := s.Get(NewKey(0, "a", FamConv).Str("c"))
	if err != nil || string(v) != "conv" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	if _, err := s.Get(NewKey(0, "b", FamConv).Str("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of missing key: %v", err)
	}
	var got []byte
	err = s.ScanPrefix(NewKey(0, "a", FamMsg).Str("c"), true, func(_, v []byte) (bool, error) {
		got = append(got, v[0])
		return len(got) < 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []byte{4, 3, 2}) {
		t.Fatalf("reverse scan = %v", got)
	}
	b = s.NewBatch()
	b.DeleteRange(NewKey(0, "a", FamMsg).Str("c").Int64(0), NewKey(0, "a", FamMsg).Str("c").Int64(3))
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	_ = s.ScanPrefix(NewKey(0, "a", FamMsg).Bytes(), false, func(_, v []byte) (bool, error) {
		got = append(got, v[0])
		return true, nil
	})
	if !slices.Equal(got, []byte{3, 4}) {
		t.Fatalf("after DeleteRange = %v", got)
	}
}

func TestStorePrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte{1, 2}, []byte{1, 3}},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, tt := range tests {
		if got := PrefixEnd(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", tt.in, got, tt.want)
		}
	}
}

func TestStoreCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir + "/db"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	b := s.NewBatch()
	b.Set(NewKey(1, "a", FamConv).Str("c"), []byte("v1"))
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(dir + "/backup"); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(dir + "/backup"); err == nil {
		t.Fatal("checkpoint into an existing directory succeeded")
	}
	b = s.NewBatch()
	b.Set(NewKey(1, "a", FamConv).Str("c"), []byte("v2"))
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	backup, err := Open(Config{Dir: dir + "/backup"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = backup.Close() }()
	if v, err := backup.Get(NewKey(1, "a", FamConv).Str("c")); err != nil || string(v) != "v1" {
		t.Fatalf("backup holds %q, %v; want the state at checkpoint time", v, err)
	}
}

// ScanShard sees every key of its shard and nothing else, also for the last
// shard, whose prefix has no PrefixEnd (node-local keys sort above it).
func TestStoreScanShard(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer func() { _ = s.Close() }()
	last := NewKey(0xffff, "app", FamMsg).Str("c").Bytes()
	first := NewKey(0, "app", FamMsg).Str("c").Bytes()
	local := []byte("\xff\xff\xfflocal")
	if err := s.Apply([]Op{{Kind: OpSet, Key: last}, {Kind: OpSet, Key: first}, {Kind: OpSet, Key: local}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		shard uint16
		want  []byte
	}{{0, first}, {0xffff, last}} {
		var got [][]byte
		if err := s.ScanShard(tt.shard, func(k, _ []byte) (bool, error) {
			got = append(got, append([]byte(nil), k...))
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !bytes.Equal(got[0], tt.want) {
			t.Fatalf("ScanShard(%#x) = %q, want only %q", tt.shard, got, tt.want)
		}
	}
}

// TestSplitByShard groups ops by shard in order of first appearance and
// keeps their order within a shard.
func TestSplitByShard(t *testing.T) {
	k := func(shard uint16, s string) []byte { return append(ShardPrefix(shard), s...) }
	ops := []Op{{Kind: OpSet, Key: k(7, "a")}, {Kind: OpSet, Key: k(2, "b")}, {Kind: OpDelete, Key: k(7, "c")}}
	shards, parts, err := SplitByShard(ops)
	if err != nil || len(shards) != 2 || shards[0] != 7 || shards[1] != 2 {
		t.Fatalf("shards %v, %v", shards, err)
	}
	if p := parts[7]; len(p) != 2 || string(p[0].Key) != string(ops[0].Key) || string(p[1].Key) != string(ops[2].Key) {
		t.Fatalf("shard 7: %v", p)
	}
	if _, _, err := SplitByShard([]Op{{Kind: OpSet, Key: []byte{1}}}); err == nil {
		t.Fatal("a key without a shard prefix split")
	}
	if _, _, err := SplitByShard([]Op{{Kind: OpSet, Key: k(7, "a")}, {Kind: OpSet, Key: []byte{1}}}); err == nil {
		t.Fatal("a second key without a shard prefix split")
	}
	// One shard: the part is the ops in order, and appending to it leaves
	// the ops as they were.
	one := make([]Op, 2, 4) // room to append in place
	one[0], one[1] = ops[0], Op{Kind: OpSet, Key: k(7, "d")}
	shards, parts, err = SplitByShard(one)
	if err != nil || len(shards) != 1 || shards[0] != 7 || len(parts) != 1 || len(parts[7]) != 2 || string(parts[7][1].Key) != string(k(7, "d")) {
		t.Fatalf("one shard: %v %v %v", shards, parts, err)
	}
	_ = append(parts[7], Op{Kind: OpSet, Key: k(7, "e")})
	if string(one[:3][2].Key) == string(k(7, "e")) {
		t.Fatal("an append to the one part wrote into the batch's ops")
	}
}

// TestStoreBatchOwned: SetOwned and DeleteOwned record the same writes as
// Set and Delete, with the caller's slices themselves (no copy), and
// commit alike.
func TestStoreBatchOwned(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	k1, k2, v := NewKey(1, "app", FamConv).Str("a").Bytes(), NewKey(1, "app", FamConv).Str("b").Bytes(), []byte("v")
	b := st.NewBatch()
	b.Grow(2)
	b.SetOwned(k1, v)
	b.SetOwned(k2, v)
	if ops := b.Ops(); len(ops) != 2 || &ops[0].Key[0] != &k1[0] || &ops[0].Value[0] != &v[0] {
		t.Fatalf("SetOwned recorded %v, not the caller's slices", ops)
	}
	must(t, st.Commit(b))
	b = st.NewBatch()
	b.DeleteOwned(k2)
	if ops := b.Ops(); len(ops) != 1 || ops[0].Kind != OpDelete || &ops[0].Key[0] != &k2[0] {
		t.Fatalf("DeleteOwned recorded %v", ops)
	}
	must(t, st.Commit(b))
	if got, err := st.Get(k1); err != nil || string(got) != "v" {
		t.Fatalf("Get(k1) = %q, %v", got, err)
	}
	if _, err := st.Get(k2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(k2) after DeleteOwned: %v", err)
	}
}
