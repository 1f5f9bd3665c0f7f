package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"
)

// rec is one versioned record as a test writes it.
type rec struct {
	version uint64
	tomb    bool
	value   string
}

func (r rec) encode() []byte { return EncodeVersioned(r.version, r.tomb, []byte(r.value)) }

func (r rec) String() string {
	if r.tomb {
		return fmt.Sprintf("v%d:tomb", r.version)
	}
	return fmt.Sprintf("v%d:%q", r.version, r.value)
}

// cmpRec is the last-writer-wins order, stated independently of the
// merger: higher version first, then a tombstone over a value, then the
// greater value bytes.
func cmpRec(a, b rec) int {
	if c := cmp.Compare(a.version, b.version); c != 0 {
		return c
	}
	if a.tomb != b.tomb {
		if a.tomb {
			return 1
		}
		return -1
	}
	return strings.Compare(a.value, b.value)
}

func winner(rs []rec) rec { return slices.MaxFunc(rs, cmpRec) }

func setOp(key []byte, r rec) Op { return Op{Kind: OpSet, Key: key, Value: r.encode()} }

// tb is what the helpers need of a test: a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustApplyVersioned(t tb, s *Store, ops ...Op) {
	t.Helper()
	if err := s.ApplyVersioned(ops); err != nil {
		t.Fatalf("ApplyVersioned: %v", err)
	}
}

// wantRecord checks that key reads as exactly want, through Get and
// through an iterator (both merge the key's operands).
func wantRecord(t tb, s *Store, key []byte, want rec) {
	t.Helper()
	got, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%x): %v", key, err)
	}
	if !bytes.Equal(got, want.encode()) {
		t.Fatalf("Get(%x) = %s, want %s", key, decodeRec(t, got), want)
	}
	var scanned []byte
	err = s.Scan(key, append(slices.Clone(key), 0), false, func(_, v []byte) (bool, error) {
		scanned = slices.Clone(v)
		return false, nil
	})
	if err != nil {
		t.Fatalf("Scan(%x): %v", key, err)
	}
	if !bytes.Equal(scanned, want.encode()) {
		t.Fatalf("Scan(%x) = %s, want %s", key, decodeRec(t, scanned), want)
	}
}

func decodeRec(t tb, b []byte) rec {
	t.Helper()
	v, tomb, val, err := DecodeVersioned(b)
	if err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return rec{version: v, tomb: tomb, value: string(val)}
}

// sstFiles lists the sstables of the database in fs.
func sstFiles(t testing.TB, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("/db")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".sst") {
			out = append(out, n)
		}
	}
	return out
}

func permutations(rs []rec) [][]rec {
	if len(rs) <= 1 {
		return [][]rec{slices.Clone(rs)}
	}
	var out [][]rec
	for i := range rs {
		rest := slices.Concat(rs[:i], rs[i+1:])
		for _, p := range permutations(rest) {
			out = append(out, append([]rec{rs[i]}, p...))
		}
	}
	return out
}

func TestStoreVersionedRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		version   uint64
		tomb      bool
		value     []byte
		wantValue []byte
	}{
		{"value", 42, false, []byte("hello"), []byte("hello")},
		{"empty value", 1, false, nil, nil},
		{"zero version", 0, false, []byte{0, 1, 2}, []byte{0, 1, 2}},
		{"max version", math.MaxUint64, false, []byte("x"), []byte("x")},
		{"tombstone", 7, true, nil, nil},
		{"tombstone drops its value", 7, true, []byte("ignored"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := EncodeVersioned(tt.version, tt.tomb, tt.value)
			if len(b) != versionHeader+len(tt.wantValue) {
				t.Fatalf("encoded length %d, want %d", len(b), versionHeader+len(tt.wantValue))
			}
			v, tomb, val, err := DecodeVersioned(b)
			if err != nil {
				t.Fatal(err)
			}
			if v != tt.version || tomb != tt.tomb || !bytes.Equal(val, tt.wantValue) {
				t.Fatalf("decoded (%d, %v, %q), want (%d, %v, %q)", v, tomb, val, tt.version, tt.tomb, tt.wantValue)
			}
		})
	}
}

func TestStoreVersionedDecodeCorrupt(t *testing.T) {
	valid := EncodeVersioned(5, false, []byte("v"))
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"kind only", []byte{VersionValue}},
		{"short header", valid[:versionHeader-1]},
		{"kind zero", append([]byte{0}, valid[1:]...)},
		{"kind four", append([]byte{4}, valid[1:]...)},
		{"kind 0xff", append([]byte{0xff}, valid[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := DecodeVersioned(tt.in); !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("DecodeVersioned(%x) error = %v, want ErrCorruptValue", tt.in, err)
			}
		})
	}
}

func TestStoreVersionedRejectsShortRecord(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer func() { _ = s.Close() }()
	good := NewKey(1, "a", FamConv).Str("good").Bytes()
	bad := NewKey(1, "a", FamConv).Str("bad").Bytes()
	err := s.ApplyVersioned([]Op{
		setOp(good, rec{version: 1, value: "v"}),
		{Kind: OpSet, Key: bad, Value: []byte{VersionValue, 0, 0}},
	})
	if !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("ApplyVersioned of a short record: %v, want ErrCorruptValue", err)
	}
	// The batch is atomic: the valid op before the bad one is not applied.
	if _, err := s.Get(good); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a rejected batch: %v, want ErrNotFound", err)
	}
}

// TestStoreVersionedEveryOrder applies each scenario's records in every
// order, one key per order. In the "flush" mode the store is closed and
// reopened after every round, which flushes the memtable to an sstable, so
// a key's records sit in different sstables and levels; the reopens also
// trigger L0 compactions, which merge them. After every round each key must
// read as the winner of the records it has received so far.
func TestStoreVersionedEveryOrder(t *testing.T) {
	scenarios := []struct {
		name string
		recs []rec
		want rec
	}{
		{
			name: "highest version, equal versions broken by value",
			recs: []rec{{3, false, "old"}, {5, false, "a"}, {6, true, ""}, {7, false, "b"}, {7, false, "c"}},
			want: rec{7, false, "c"},
		},
		{
			name: "tombstone wins by version and hides lower versions",
			recs: []rec{{4, false, "x"}, {9, true, ""}, {8, false, "y"}, {2, false, "z"}},
			want: rec{9, true, ""},
		},
		{
			name: "tombstone wins a tie with a value",
			recs: []rec{{5, false, "v"}, {5, true, ""}, {1, false, "w"}},
			want: rec{5, true, ""},
		},
		{
			name: "value above a tombstone wins",
			recs: []rec{{5, true, ""}, {6, false, "back"}, {4, false, "old"}},
			want: rec{6, false, "back"},
		},
	}
	for _, mode := range []string{"memtable", "flush", "one batch"} {
		t.Run(mode, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openMem(t, fs)
			defer func() { _ = s.Close() }()
			type keyed struct {
				key   []byte
				order []rec
			}
			var all []keyed
			for si, sc := range scenarios {
				if got := winner(sc.recs); got != sc.want {
					t.Fatalf("%s: test model picks %s, scenario says %s", sc.name, got, sc.want)
				}
				for pi, p := range permutations(sc.recs) {
					key := NewKey(1, "app", FamConv).Str(fmt.Sprintf("s%d/p%d", si, pi)).Bytes()
					all = append(all, keyed{key, p})
				}
			}
			if mode == "one batch" {
				var ops []Op
				for _, k := range all {
					for _, r := range k.order {
						ops = append(ops, setOp(k.key, r))
					}
				}
				mustApplyVersioned(t, s, ops...)
				for _, k := range all {
					wantRecord(t, s, k.key, winner(k.order))
				}
				return
			}
			seen := map[string]bool{}
			for round := 0; ; round++ {
				applied := false
				for _, k := range all {
					if round < len(k.order) {
						mustApplyVersioned(t, s, setOp(k.key, k.order[round]))
						applied = true
					}
				}
				if !applied {
					break
				}
				if mode == "flush" {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openMem(t, fs)
					for _, f := range sstFiles(t, fs) {
						seen[f] = true
					}
				}
				for _, k := range all {
					wantRecord(t, s, k.key, winner(k.order[:min(round+1, len(k.order))]))
				}
			}
			if mode == "flush" {
				waitForCompaction(t, fs, seen)
				for _, k := range all {
					wantRecord(t, s, k.key, winner(k.order))
				}
			}
		})
	}
}

// waitForCompaction waits until an sstable seen earlier has been compacted
// away, so the records read afterwards went through the merger inside a
// compaction.
func waitForCompaction(t testing.TB, fs vfs.FS, seen map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		live := map[string]bool{}
		for _, f := range sstFiles(t, fs) {
			live[f] = true
		}
		for f := range seen {
			if !live[f] {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sstable was compacted away; seen %v, live %v", seen, live)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStoreVersionedLowerVersionAfterTombstone(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	defer func() { _ = s.Close() }()
	key := NewKey(2, "a", FamMsg).Str("c").Int64(1).Bytes()
	mustApplyVersioned(t, s, setOp(key, rec{version: 10, value: "live"}))
	mustApplyVersioned(t, s, setOp(key, rec{version: 11, tomb: true}))
	wantRecord(t, s, key, rec{version: 11, tomb: true})
	// Flush the tombstone, then let late, older writes arrive.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	mustApplyVersioned(t, s, setOp(key, rec{version: 9, value: "stale"}))
	mustApplyVersioned(t, s, setOp(key, rec{version: 10, value: "live"}))
	wantRecord(t, s, key, rec{version: 11, tomb: true})
	mustApplyVersioned(t, s, setOp(key, rec{version: 12, value: "again"}))
	wantRecord(t, s, key, rec{version: 12, value: "again"})
}

// TestStoreVersionedOpDeleteLeavesNoTrace pins down the documented
// difference between a tombstone and OpDelete: after OpDelete an older
// record is visible again.
func TestStoreVersionedOpDeleteLeavesNoTrace(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer func() { _ = s.Close() }()
	key := NewKey(2, "a", FamConv).Str("c").Bytes()
	mustApplyVersioned(t, s, setOp(key, rec{version: 10, value: "new"}))
	mustApplyVersioned(t, s, Op{Kind: OpDelete, Key: key})
	if _, err := s.Get(key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after OpDelete: %v, want ErrNotFound", err)
	}
	mustApplyVersioned(t, s, setOp(key, rec{version: 3, value: "old"}))
	wantRecord(t, s, key, rec{version: 3, value: "old"})
}

func TestStoreVersionedShardDigest(t *testing.T) {
	k := func(shard uint16, cid string) []byte { return NewKey(shard, "app", FamConv).Str(cid).Bytes() }
	ops := []Op{
		setOp(k(4, "a"), rec{version: 1, value: "a1"}),
		setOp(k(4, "a"), rec{version: 3, value: "a3"}),
		setOp(k(4, "b"), rec{version: 2, tomb: true}),
		setOp(k(4, "b"), rec{version: 1, value: "b1"}),
		setOp(k(4, "c"), rec{version: 5, value: "c5"}),
		setOp(k(5, "other shard"), rec{version: 1, value: "x"}),
	}
	reversed := slices.Clone(ops)
	slices.Reverse(reversed)

	dir := t.TempDir()
	a, err := Open(Config{Dir: dir + "/a"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()
	b := openMem(t, vfs.NewMem())
	defer func() { _ = b.Close() }()
	mustApplyVersioned(t, a, ops...)
	for _, op := range reversed {
		mustApplyVersioned(t, b, op)
	}
	digest := func(t *testing.T, s *Store, shard uint16) (uint64, int64) {
		t.Helper()
		d, n, err := s.ShardDigest(shard)
		if err != nil {
			t.Fatalf("ShardDigest(%d): %v", shard, err)
		}
		return d, n
	}
	da, na := digest(t, a, 4)
	db, nb := digest(t, b, 4)
	if da != db || na != nb || na != 3 {
		t.Fatalf("digests after different orders: (%x, %d) vs (%x, %d), want equal with 3 keys", da, na, db, nb)
	}
	if d5, _ := digest(t, a, 5); d5 == da {
		t.Fatal("shards 4 and 5 have the same digest")
	}
	if _, n := digest(t, a, 6); n != 0 {
		t.Fatalf("empty shard has %d keys", n)
	}

	// A record that differs in version, kind or key changes the digest.
	tests := []struct {
		name string
		op   Op
	}{
		{"higher version", setOp(k(4, "c"), rec{version: 6, value: "c5"})},
		{"tombstone", setOp(k(4, "c"), rec{version: 6, tomb: true})},
		{"extra key", setOp(k(4, "d"), rec{version: 1, value: "d"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openMem(t, vfs.NewMem())
			defer func() { _ = c.Close() }()
			mustApplyVersioned(t, c, ops...)
			mustApplyVersioned(t, c, tt.op)
			if dc, _ := digest(t, c, 4); dc == da {
				t.Fatalf("digest unchanged after %s", tt.name)
			}
		})
	}

	// A stale record changes nothing: its version loses.
	mustApplyVersioned(t, b, setOp(k(4, "a"), rec{version: 2, value: "stale"}))
	if d, _ := digest(t, b, 4); d != da {
		t.Fatal("digest changed after a losing record")
	}

	if err := a.Apply([]Op{{Kind: OpSet, Key: k(6, "bad"), Value: []byte("raw")}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.ShardDigest(6); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("ShardDigest over a non-versioned value: %v, want ErrCorruptValue", err)
	}
}

func TestStoreVersionedDeleteShard(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	defer func() { _ = s.Close() }()
	for _, shard := range []uint16{2, 3, 4} {
		for i := range 10 {
			key := NewKey(shard, "app", FamMsg).Str("c").Int64(int64(i)).Bytes()
			mustApplyVersioned(t, s, setOp(key, rec{version: uint64(i + 1), value: "m"}))
		}
	}
	// Some of the shard in an sstable, some in the memtable.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openMem(t, fs)
	mustApplyVersioned(t, s, setOp(NewKey(3, "app", FamConv).Str("c").Bytes(), rec{version: 20, value: "conv"}))
	before := map[uint16]uint64{}
	for _, shard := range []uint16{2, 4} {
		d, _, err := s.ShardDigest(shard)
		if err != nil {
			t.Fatal(err)
		}
		before[shard] = d
	}

	if err := s.DeleteShard(3); err != nil {
		t.Fatal(err)
	}
	if _, n, err := s.ShardDigest(3); err != nil || n != 0 {
		t.Fatalf("shard 3 after DeleteShard: %d keys, %v", n, err)
	}
	for shard, want := range before {
		if d, n, err := s.ShardDigest(shard); err != nil || d != want || n != 10 {
			t.Fatalf("neighbour shard %d changed by DeleteShard(3): %d keys, %v", shard, n, err)
		}
	}
	// No trace is left: the shard can be pulled again from scratch.
	key := NewKey(3, "app", FamMsg).Str("c").Int64(0).Bytes()
	mustApplyVersioned(t, s, setOp(key, rec{version: 1, value: "m"}))
	wantRecord(t, s, key, rec{version: 1, value: "m"})
}

// TestStoreVersionedConverge is the property behind replica convergence:
// two stores that receive the same records, in any order and batching,
// hold the same winner for every key and the same shard digest. Each check
// uses a fresh shard of two long-lived stores.
func TestStoreVersionedConverge(t *testing.T) {
	fsA, fsB := vfs.NewMem(), vfs.NewMem()
	a, b := openMem(t, fsA), openMem(t, fsB)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	genRec := rapid.Custom(func(t *rapid.T) rec {
		r := rec{version: rapid.Uint64Range(1, 6).Draw(t, "version"), tomb: rapid.Bool().Draw(t, "tomb")}
		if !r.tomb {
			r.value = rapid.StringOfN(rapid.RuneFrom([]rune("ab\x00")), 0, 3, -1).Draw(t, "value")
		}
		return r
	})
	type write struct {
		key int
		r   rec
	}
	genWrite := rapid.Custom(func(t *rapid.T) write {
		return write{key: rapid.IntRange(0, 4).Draw(t, "key"), r: genRec.Draw(t, "rec")}
	})
	var shard uint16
	rapid.Check(t, func(rt *rapid.T) {
		shard++
		key := func(i int) []byte { return NewKey(shard, "app", FamConv).Str(fmt.Sprint(i)).Bytes() }
		writes := rapid.SliceOfN(genWrite, 1, 30).Draw(rt, "writes")
		other := rapid.Permutation(writes).Draw(rt, "order")
		apply := func(s *Store, ws []write, label string) {
			for len(ws) > 0 {
				n := rapid.IntRange(1, len(ws)).Draw(rt, label+" batch")
				var ops []Op
				for _, w := range ws[:n] {
					ops = append(ops, setOp(key(w.key), w.r))
				}
				mustApplyVersioned(rt, s, ops...)
				ws = ws[n:]
			}
		}
		apply(a, writes, "a")
		if rapid.IntRange(0, 9).Draw(rt, "flush") == 0 {
			if err := b.Close(); err != nil {
				rt.Fatal(err)
			}
			var err error
			if b, err = Open(Config{Dir: "/db", FS: fsB}); err != nil {
				rt.Fatal(err)
			}
		}
		apply(b, other, "b")

		byKey := map[int][]rec{}
		for _, w := range writes {
			byKey[w.key] = append(byKey[w.key], w.r)
		}
		for k, rs := range byKey {
			wantRecord(rt, a, key(k), winner(rs))
			wantRecord(rt, b, key(k), winner(rs))
		}
		da, na, errA := a.ShardDigest(shard)
		db, nb, errB := b.ShardDigest(shard)
		if errA != nil || errB != nil {
			rt.Fatalf("ShardDigest: %v, %v", errA, errB)
		}
		if da != db || na != nb || na != int64(len(byKey)) {
			rt.Fatalf("digests (%x, %d) and (%x, %d), want equal with %d keys", da, na, db, nb, len(byKey))
		}
	})
}

func TestStoreVersionedDeleteLastShard(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer func() { _ = s.Close() }()
	key := NewKey(0xffff, "app", FamConv).Str("c").Bytes()
	mustApplyVersioned(t, s, setOp(key, rec{version: 1, value: "v"}))
	if err := s.DeleteShard(0xffff); err != nil {
		t.Fatal(err)
	}
	if _, n, err := s.ShardDigest(0xffff); err != nil || n != 0 {
		t.Fatalf("shard 65535 after DeleteShard: %d keys, %v", n, err)
	}
}
