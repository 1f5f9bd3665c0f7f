package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"
)

// field is one doc entry as a test writes it.
type field struct {
	name    string
	version uint64
	tomb    bool
	value   string
}

// operand is a merge operand as a test writes it: a doc (floor and
// entries), or a whole-record tombstone (tomb > 0: its version).
type operand struct {
	floor   uint64
	entries []field
	tomb    uint64
}

// modelDoc encodes a doc the way the format is documented, independently
// of the merger: header, floor, entries sorted by name.
func modelDoc(floor uint64, entries []field) []byte {
	newest := floor
	for _, e := range entries {
		newest = max(newest, e.version)
	}
	slices.SortFunc(entries, func(a, b field) int { return bytes.Compare([]byte(a.name), []byte(b.name)) })
	out := []byte{VersionDoc}
	out = binary.BigEndian.AppendUint64(out, newest)
	out = binary.BigEndian.AppendUint64(out, floor)
	for _, e := range entries {
		out = binary.AppendUvarint(out, uint64(len(e.name)))
		out = append(out, e.name...)
		out = binary.BigEndian.AppendUint64(out, e.version)
		if e.tomb {
			out = append(out, 1)
			continue
		}
		out = append(out, 0)
		out = binary.AppendUvarint(out, uint64(len(e.value)))
		out = append(out, e.value...)
	}
	return out
}

// fieldWins is the per-field order, stated independently of the merger.
func fieldWins(a, b field) bool {
	if a.version != b.version {
		return a.version > b.version
	}
	if a.tomb != b.tomb {
		return a.tomb
	}
	return a.value > b.value
}

// model returns the record that merging ops must produce.
func model(ops []operand) []byte {
	var floor, newest uint64
	best := map[string]field{}
	for _, op := range ops {
		if op.tomb > 0 {
			floor = max(floor, op.tomb)
			continue
		}
		floor = max(floor, op.floor)
		for _, e := range op.entries {
			newest = max(newest, e.version)
			if old, ok := best[e.name]; !ok || fieldWins(e, old) {
				best[e.name] = e
			}
		}
	}
	newest = max(newest, floor)
	var live []field
	for _, e := range best {
		if e.version > floor && (!e.tomb || !expired(e.version, newest)) {
			live = append(live, e)
		}
	}
	if len(live) == 0 {
		return EncodeVersioned(floor, true, nil)
	}
	return modelDoc(floor, live)
}

// encode returns the canonical record of one operand.
func (o operand) encode() []byte { return model([]operand{o}) }

// mergeAll merges records with the store's merger in the given order.
func mergeAll(t tb, recs [][]byte) []byte {
	t.Helper()
	m, err := lwwMerger.Merge(nil, recs[0])
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	for i, r := range recs[1:] {
		add := m.MergeOlder
		if i%2 == 0 {
			add = m.MergeNewer
		}
		if err := add(r); err != nil {
			t.Fatalf("merge: %v", err)
		}
	}
	out, _, err := m.Finish(true)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	return slices.Clone(out)
}

// mergeTree merges recs grouped by a random binary tree.
func mergeTree(rt *rapid.T, recs [][]byte) []byte {
	if len(recs) == 1 {
		return recs[0]
	}
	cut := rapid.IntRange(1, len(recs)-1).Draw(rt, "cut")
	return mergeAll(rt, [][]byte{mergeTree(rt, recs[:cut]), mergeTree(rt, recs[cut:])})
}

func genOperand(maxVersion uint64) *rapid.Generator[operand] {
	return rapid.Custom(func(t *rapid.T) operand {
		if rapid.IntRange(0, 5).Draw(t, "whole tombstone") == 0 {
			return operand{tomb: rapid.Uint64Range(1, maxVersion).Draw(t, "tomb")}
		}
		floor := rapid.Uint64Range(0, maxVersion/2).Draw(t, "floor")
		names := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"a", "b", "m/x", "m/y", "m/yy", "name", ""}), 1, 4,
			rapid.ID[string]).Draw(t, "names")
		var o operand
		o.floor = floor
		for _, n := range names {
			f := field{name: n, version: rapid.Uint64Range(floor+1, maxVersion).Draw(t, "version"),
				tomb: rapid.IntRange(0, 3).Draw(t, "tomb") == 0}
			if !f.tomb {
				f.value = rapid.StringOfN(rapid.RuneFrom([]rune("pq\x00")), 0, 2, -1).Draw(t, "value")
			}
			o.entries = append(o.entries, f)
		}
		return o
	})
}

// TestStoreDocMergeLaws checks that merging docs and whole-record
// tombstones in any order and grouping gives the same bytes, the bytes the
// model computes, and that merging a result again changes nothing.
func TestStoreDocMergeLaws(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ops := rapid.SliceOfN(genOperand(12), 1, 8).Draw(rt, "ops")
		want := model(ops)
		var recs [][]byte
		for _, o := range ops {
			recs = append(recs, o.encode())
		}
		if got := mergeAll(rt, recs); !bytes.Equal(got, want) {
			rt.Fatalf("merge in order = %x, want %x", got, want)
		}
		perm := rapid.Permutation(recs).Draw(rt, "order")
		got := mergeTree(rt, perm)
		if !bytes.Equal(got, want) {
			rt.Fatalf("merge by a random tree = %x, want %x", got, want)
		}
		if again := mergeAll(rt, [][]byte{got, got}); !bytes.Equal(again, want) {
			rt.Fatalf("merge with itself = %x, want %x", again, want)
		}
		if again := mergeAll(rt, append([][]byte{got}, recs...)); !bytes.Equal(again, want) {
			rt.Fatalf("merge of the result with its operands = %x, want %x", again, want)
		}
	})
}

// TestStoreDocMergeInStore applies the same docs and tombstones to two
// stores in different orders and batches, with a flush in between: both
// read the model's record and have equal range digests.
func TestStoreDocMergeInStore(t *testing.T) {
	fsA, fsB := vfs.NewMem(), vfs.NewMem()
	a, b := openMem(t, fsA), openMem(t, fsB)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	var shard uint16
	rapid.Check(t, func(rt *rapid.T) {
		shard++
		key := NewKey(shard, "app", FamConv).Str("c").Bytes()
		ops := rapid.SliceOfN(genOperand(12), 1, 10).Draw(rt, "ops")
		apply := func(s *Store, ops []operand, label string) {
			for len(ops) > 0 {
				n := rapid.IntRange(1, len(ops)).Draw(rt, label+" batch")
				var batch []Op
				for _, o := range ops[:n] {
					batch = append(batch, Op{Kind: OpSet, Key: key, Value: o.encode()})
				}
				mustApplyVersioned(rt, s, batch...)
				ops = ops[n:]
			}
		}
		apply(a, ops, "a")
		if rapid.IntRange(0, 4).Draw(rt, "flush") == 0 {
			if err := b.Close(); err != nil {
				rt.Fatal(err)
			}
			var err error
			if b, err = Open(Config{Dir: "/db", FS: fsB}); err != nil {
				rt.Fatal(err)
			}
		}
		apply(b, rapid.Permutation(ops).Draw(rt, "order"), "b")
		want := model(ops)
		for _, s := range []*Store{a, b} {
			got, err := s.Get(key)
			if err != nil || !bytes.Equal(got, want) {
				rt.Fatalf("Get = %x, %v; want %x", got, err, want)
			}
		}
		da, errA := a.ShardRangeDigest(shard, ^uint64(0))
		db, errB := b.ShardRangeDigest(shard, ^uint64(0))
		if errA != nil || errB != nil || da.Summary() != db.Summary() {
			rt.Fatalf("range digests differ: %v %v", errA, errB)
		}
		sa, _, errA := a.ShardDigest(shard)
		sb, _, errB := b.ShardDigest(shard)
		if errA != nil || errB != nil || sa != sb {
			rt.Fatalf("shard digests differ: %v %v", errA, errB)
		}
	})
}

// TestStoreDocShardDigestCoversFields: two replicas holding docs with the
// same newest version but different fields have different digests.
func TestStoreDocShardDigestCoversFields(t *testing.T) {
	key := NewKey(3, "app", FamConv).Str("c").Bytes()
	full := operand{entries: []field{{"m/x", 5, false, ""}, {"m/y", 7, false, ""}}}.encode()
	partial := operand{entries: []field{{"m/y", 7, false, ""}}}.encode()
	var digests []uint64
	for _, rec := range [][]byte{full, partial} {
		s := openMem(t, vfs.NewMem())
		mustApplyVersioned(t, s, Op{Kind: OpSet, Key: key, Value: rec})
		d, _, err := s.ShardDigest(3)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		_ = s.Close()
	}
	if digests[0] == digests[1] {
		t.Fatal("docs with different fields under one version have equal digests")
	}
}

func TestStoreDocRoundTrip(t *testing.T) {
	var b Batch
	b.MergeFields([]byte("k"), []Field{
		{Name: "name", Value: []byte("old")},
		{Name: "m/tom", Value: nil},
		{Name: "gone", Deleted: true},
		{Name: "name", Value: []byte("new")}, // the last of equal names wins
	})
	if len(b.Ops()) != 1 || b.Ops()[0].Kind != OpMergeFields {
		t.Fatalf("ops = %+v", b.Ops())
	}
	rec, err := DocRecord(42, b.Ops()[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	want := modelDoc(0, []field{{"name", 42, false, "new"}, {"m/tom", 42, false, ""}, {"gone", 42, true, ""}})
	if !bytes.Equal(rec, want) {
		t.Fatalf("DocRecord = %x, want %x", rec, want)
	}
	if v, tomb, _, err := DecodeVersioned(rec); err != nil || v != 42 || tomb {
		t.Fatalf("DecodeVersioned(doc) = %d, %v, %v", v, tomb, err)
	}
	val, live, err := DocValue(rec)
	if err != nil || !live {
		t.Fatalf("DocValue: %v, %v", live, err)
	}
	fields, err := DecodeFields(val)
	if err != nil {
		t.Fatal(err)
	}
	wantFields := []Field{{Name: "m/tom", Value: []byte{}}, {Name: "name", Value: []byte("new")}}
	if !slices.EqualFunc(fields, wantFields, func(a, b Field) bool {
		return a.Name == b.Name && bytes.Equal(a.Value, b.Value) && a.Deleted == b.Deleted
	}) {
		t.Fatalf("DecodeFields = %+v, want %+v", fields, wantFields)
	}
	if !bytes.Equal(val, EncodeFields(wantFields)) {
		t.Fatalf("DocValue = %x, EncodeFields = %x", val, EncodeFields(wantFields))
	}

	// A doc of field tombstones only reads as not found.
	b = Batch{}
	b.MergeFields([]byte("k"), []Field{{Name: "x", Deleted: true}})
	rec, err = DocRecord(7, b.Ops()[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if _, live, err := DocValue(rec); err != nil || live {
		t.Fatalf("DocValue of tombstones = %v, %v; want not live", live, err)
	}
	b = Batch{}
	b.MergeFields([]byte("k"), nil)
	if !b.Empty() {
		t.Fatal("MergeFields without fields recorded an op")
	}
}

func TestStoreDocDecodeCorrupt(t *testing.T) {
	good := modelDoc(2, []field{{"a", 5, false, "x"}, {"b", 9, true, ""}})
	withHeader := func(version, floor uint64, body []byte) []byte {
		out := []byte{VersionDoc}
		out = binary.BigEndian.AppendUint64(out, version)
		out = binary.BigEndian.AppendUint64(out, floor)
		return append(out, body...)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"header only", good[:docHeader]},
		{"no floor", good[:versionHeader+3]},
		{"truncated entry", good[:len(good)-1]},
		{"trailing byte", append(slices.Clone(good), 0)},
		{"wrong header version", withHeader(10, 2, good[docHeader:])},
		{"entry at the floor", modelDoc(5, []field{{"a", 5, false, "x"}})},
		{"overlong name length", withHeader(5, 0, []byte{0x81, 0x00, 'a', 0, 0, 0, 0, 0, 0, 0, 5, 1})},
		{"bad flag", withHeader(5, 0, []byte{1, 'a', 0, 0, 0, 0, 0, 0, 0, 5, 2})},
		{"name too long", withHeader(5, 0, binary.AppendUvarint(nil, MaxFieldName+1))},
		{"value length overflow", withHeader(5, 0, []byte{1, 'a', 0, 0, 0, 0, 0, 0, 0, 5, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})},
		{"expired field tombstone", modelDoc(0, []field{{"a", 1, true, ""}, {"b", graceVersions + 2, false, ""}})},
	}
	for _, names := range [][]string{{"b", "a"}, {"a", "a"}} {
		in := withHeader(5, 0, nil)
		for _, n := range names {
			in = appendEntry(in, &docEntry{name: []byte(n), version: 5}, true)
		}
		tests = append(tests, struct {
			name string
			in   []byte
		}{"names " + fmt.Sprint(names), in})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validDoc(tt.in); !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("validDoc(%x) = %v, want ErrCorruptValue", tt.in, err)
			}
			if _, _, err := DocValue(tt.in); !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("DocValue(%x) = %v, want ErrCorruptValue", tt.in, err)
			}
			s := openMem(t, vfs.NewMem())
			defer func() { _ = s.Close() }()
			err := s.ApplyVersioned([]Op{{Kind: OpSet, Key: []byte("k"), Value: tt.in}})
			if !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("ApplyVersioned = %v, want ErrCorruptValue", err)
			}
		})
	}
	if err := validDoc(good); err != nil {
		t.Fatalf("valid doc rejected: %v", err)
	}
	for _, bad := range [][]byte{nil, {0x7b}, {fieldsFormat, 1, 'a', 1}, {fieldsFormat, 1, 'b', 0, 0, 1, 'a', 0, 0}} {
		if _, err := DecodeFields(bad); !errors.Is(err, ErrCorruptValue) {
			t.Fatalf("DecodeFields(%x) = %v, want ErrCorruptValue", bad, err)
		}
	}
	if _, err := DocRecord(0, []byte{1, 'a', 0, 0}); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("DocRecord at version 0: %v", err)
	}
	if _, err := DocRecord(1, nil); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("DocRecord without fields: %v", err)
	}
}

// TestStoreDocTombstoneGrace pins down the field tombstone lifetime: kept
// (beating a late older add) within the grace, dropped once the doc's
// newest version is more than the grace ahead.
func TestStoreDocTombstoneGrace(t *testing.T) {
	const t0 = uint64(1000) << versionLogicalBits
	del := operand{entries: []field{{"m/x", t0 + 10, true, ""}}}
	lateAdd := operand{entries: []field{{"m/x", t0 + 5, false, ""}}}
	within := operand{entries: []field{{"name", t0 + 10 + graceVersions, false, "n"}}}
	beyond := operand{entries: []field{{"name", t0 + 11 + graceVersions, false, "n"}}}

	got := mergeAll(t, [][]byte{del.encode(), within.encode(), lateAdd.encode()})
	want := modelDoc(0, []field{{"m/x", t0 + 10, true, ""}, {"name", t0 + 10 + graceVersions, false, "n"}})
	if !bytes.Equal(got, want) {
		t.Fatalf("within the grace: %x, want the tombstone kept %x", got, want)
	}
	got = mergeAll(t, [][]byte{del.encode(), beyond.encode()})
	want = modelDoc(0, []field{{"name", t0 + 11 + graceVersions, false, "n"}})
	if !bytes.Equal(got, want) {
		t.Fatalf("beyond the grace: %x, want the tombstone dropped %x", got, want)
	}
}

// TestStoreDocWholeRecords covers a doc against whole records: a
// tombstone raises the floor (a doc emptied by it becomes the tombstone);
// a plain value and a doc compare as whole records.
func TestStoreDocWholeRecords(t *testing.T) {
	doc := operand{entries: []field{{"a", 5, false, "x"}, {"b", 8, false, "y"}}}.encode()
	tests := []struct {
		name string
		recs [][]byte
		want []byte
	}{
		{"tombstone raises the floor", [][]byte{doc, EncodeVersioned(6, true, nil)},
			modelDoc(6, []field{{"b", 8, false, "y"}})},
		{"tombstone above every field", [][]byte{EncodeVersioned(9, true, nil), doc}, EncodeVersioned(9, true, nil)},
		{"newer value wins", [][]byte{doc, EncodeVersioned(9, false, []byte("v"))}, EncodeVersioned(9, false, []byte("v"))},
		{"older value loses", [][]byte{EncodeVersioned(7, false, []byte("v")), doc}, doc},
		{"doc wins a tie", [][]byte{EncodeVersioned(8, false, []byte("v")), doc}, doc},
		{"value after a tombstone then a doc", [][]byte{EncodeVersioned(4, false, []byte("v")), EncodeVersioned(6, true, nil), doc},
			modelDoc(6, []field{{"b", 8, false, "y"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeAll(t, tt.recs); !bytes.Equal(got, tt.want) {
				t.Fatalf("merge = %x, want %x", got, tt.want)
			}
			rev := slices.Clone(tt.recs)
			slices.Reverse(rev)
			if got := mergeAll(t, rev); !bytes.Equal(got, tt.want) {
				t.Fatalf("merge in reverse = %x, want %x", got, tt.want)
			}
		})
	}
}

// TestStorePlainMergeFields: the plain Store applies field updates by
// read-modify-write, also several to one key in one batch and from
// concurrent batches.
func TestStorePlainMergeFields(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer func() { _ = s.Close() }()
	key := NewKey(1, "app", FamConv).Str("c").Bytes()
	get := func() map[string]string {
		t.Helper()
		v, err := s.Get(key)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		fields, err := DecodeFields(v)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, f := range fields {
			out[f.Name] = string(f.Value)
		}
		return out
	}
	b := s.NewBatch()
	b.MergeFields(key, []Field{{Name: "name", Value: []byte("a")}, {Name: "m/x"}})
	b.MergeFields(key, []Field{{Name: "m/y"}, {Name: "m/x", Deleted: true}})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if got, want := get(), map[string]string{"name": "a", "m/y": ""}; !maps.Equal(got, want) {
		t.Fatalf("fields = %v, want %v", got, want)
	}

	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				b := s.NewBatch()
				b.MergeFields(key, []Field{{Name: fmt.Sprintf("m/w%d-%d", w, i)}})
				if err := s.Commit(b); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := get(); len(got) != 2+writers*each {
		t.Fatalf("%d fields after concurrent updates, want %d", len(got), 2+writers*each)
	}

	// Deleting every field deletes the key; Delete then MergeFields starts over.
	b = s.NewBatch()
	b.Delete(key)
	b.MergeFields(key, []Field{{Name: "name", Value: []byte("b")}})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if got, want := get(), map[string]string{"name": "b"}; !maps.Equal(got, want) {
		t.Fatalf("fields after delete and merge = %v, want %v", got, want)
	}
	b = s.NewBatch()
	b.MergeFields(key, []Field{{Name: "name", Deleted: true}})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != nil {
		t.Fatalf("fields after deleting the last = %v, want the key gone", got)
	}

	// A name too long fails the commit, without a trace.
	b = s.NewBatch()
	b.MergeFields(key, []Field{{Name: "ok"}, {Name: string(make([]byte, MaxFieldName+1))}})
	if err := s.Commit(b); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("MergeFields with a long name = %v, want ErrCorruptValue", err)
	}
	if _, err := DocRecord(1, b.Ops()[0].Value); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("DocRecord with a long name = %v, want ErrCorruptValue", err)
	}
	if got := get(); got != nil {
		t.Fatalf("fields after a failed commit = %v", got)
	}

	// A field update cannot go to a replica unversioned, nor merge into a
	// value that is not a fields value.
	if err := s.ApplyVersioned(b.Ops()); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("ApplyVersioned(OpMergeFields) = %v, want ErrCorruptValue", err)
	}
	b = s.NewBatch()
	b.Set(key, []byte(`{"legacy":1}`))
	b.MergeFields(key, []Field{{Name: "x"}})
	if err := s.Commit(b); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("MergeFields into JSON = %v, want ErrCorruptValue", err)
	}
}

func FuzzDecodeDoc(f *testing.F) {
	f.Add(modelDoc(2, []field{{"a", 5, false, "x"}, {"b", 9, true, ""}}))
	f.Add(modelDoc(0, []field{{"", 1, false, ""}}))
	f.Add(EncodeVersioned(3, true, nil))
	f.Add([]byte{VersionDoc})
	f.Fuzz(func(t *testing.T, rec []byte) {
		v, live, err := DocValue(rec)
		if err != nil {
			if !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("DocValue error %v is not ErrCorruptValue", err)
			}
			return
		}
		if _, err := DecodeFields(v); err != nil {
			t.Fatalf("DocValue produced an undecodable value %x: %v", v, err)
		}
		_ = live
		// A valid doc is canonical: merging it alone or with itself
		// returns it unchanged.
		if got := mergeAll(t, [][]byte{rec, rec}); !bytes.Equal(got, rec) {
			t.Fatalf("merge of a valid doc with itself = %x, want %x", got, rec)
		}
	})
}

func FuzzDecodeFields(f *testing.F) {
	f.Add(EncodeFields([]Field{{Name: "a", Value: []byte("x")}, {Name: "m/b"}}))
	f.Add([]byte{fieldsFormat})
	f.Add([]byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		fields, err := DecodeFields(v)
		if err != nil {
			if !errors.Is(err, ErrCorruptValue) {
				t.Fatalf("DecodeFields error %v is not ErrCorruptValue", err)
			}
			return
		}
		if got := EncodeFields(fields); !bytes.Equal(got, v) {
			t.Fatalf("round trip %x -> %x", v, got)
		}
	})
}

// FuzzMergeRecords merges two arbitrary operands: no panic, and when both
// are records replicas accept, the merge is one too and does not depend on
// the order.
func FuzzMergeRecords(f *testing.F) {
	f.Add(modelDoc(2, []field{{"a", 5, false, "x"}}), modelDoc(0, []field{{"a", 6, true, ""}, {"b", 1, false, ""}}))
	f.Add(EncodeVersioned(3, true, nil), modelDoc(0, []field{{"a", 6, false, "v"}}))
	f.Add(EncodeVersioned(3, false, []byte("v")), []byte{VersionDoc, 0})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		m, err := lwwMerger.Merge(nil, a)
		if err == nil {
			err = m.MergeOlder(b)
		}
		if err == nil {
			_, _, err = m.Finish(true)
		}
		if validRecord(a) != nil || validRecord(b) != nil {
			return
		}
		if err != nil {
			t.Fatalf("merge of valid records: %v", err)
		}
		ab, ba := mergeAll(t, [][]byte{a, b}), mergeAll(t, [][]byte{b, a})
		if validRecord(ab) != nil {
			t.Fatalf("merge produced an invalid record %x", ab)
		}
		if !bytes.Equal(ab, ba) {
			t.Fatalf("merge depends on the order: %x vs %x", ab, ba)
		}
	})
}
