package store

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// digestKey is a message key of shard 7.
func digestKey(i int) []byte {
	return NewKey(7, "app", FamMsg).Str(fmt.Sprintf("conv%d", i%5)).Int64(int64(i)).Bytes()
}

// digestOps returns n versioned records of shard 7 (versions 1..n) plus one
// record of shard 8.
func digestOps(n int) []Op {
	var ops []Op
	for i := range n {
		ops = append(ops, Op{Kind: OpSet, Key: digestKey(i), Value: EncodeVersioned(uint64(i+1), i%7 == 0, []byte(fmt.Sprintf("body %d", i)))})
	}
	return append(ops, Op{Kind: OpSet, Key: NewKey(8, "app", FamConv).Str("c").Bytes(), Value: EncodeVersioned(1, false, []byte("x"))})
}

func digestStore(t *testing.T, ops ...Op) *Store {
	t.Helper()
	s := openMem(t, vfs.NewMem())
	t.Cleanup(func() { _ = s.Close() })
	if err := s.ApplyVersioned(ops); err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRangeDigest(t *testing.T, s *Store, shard uint16, maxVersion uint64) RangeDigest {
	t.Helper()
	d, err := s.ShardRangeDigest(shard, maxVersion)
	if err != nil {
		t.Fatalf("ShardRangeDigest(%d): %v", shard, err)
	}
	return d
}

func TestStoreDigestEqualData(t *testing.T) {
	ops := digestOps(500)
	reversed := slices.Clone(ops)
	slices.Reverse(reversed)
	a := digestStore(t, ops...)
	b := digestStore(t, reversed...)
	da, db := mustRangeDigest(t, a, 7, ^uint64(0)), mustRangeDigest(t, b, 7, ^uint64(0))
	if da != db || da.Summary() != db.Summary() || da.Diff(&db) != 0 {
		t.Fatalf("equal data, different digests:\n%v\n%v", da, db)
	}
	if n := da.Keys(AllBuckets); n != 500 {
		t.Fatalf("digest counts %d keys, want 500", n)
	}
	keys, size, err := a.ShardSize(7)
	if err != nil || keys != 500 || size != da.Bytes(AllBuckets) {
		t.Fatalf("ShardSize = %d keys, %d bytes, %v; want 500 keys, %d bytes", keys, size, err, da.Bytes(AllBuckets))
	}
	empty := 0
	for _, bk := range da.Buckets {
		if bk.Keys == 0 {
			empty++
		}
	}
	if empty > 2 {
		t.Fatalf("%d of %d buckets empty with 500 keys: the bucket hash does not spread keys", empty, DigestBuckets)
	}
	var zero RangeDigest
	if d := mustRangeDigest(t, a, 9, ^uint64(0)); d != zero || d.Summary() != zero.Summary() {
		t.Fatalf("empty shard digest %v, want zero", d)
	}
	if d8 := mustRangeDigest(t, a, 8, ^uint64(0)); d8.Summary() == da.Summary() {
		t.Fatal("shards 7 and 8 have the same summary")
	}
}

func TestStoreDigestOneDifferingRecord(t *testing.T) {
	ops := digestOps(300)
	base := mustRangeDigest(t, digestStore(t, ops...), 7, ^uint64(0))
	key := digestKey(42) // version 43, body "body 42"
	// A body with the same header as another record: what a document
	// record may hold on two replicas until they merge.
	sameHeader := EncodeVersioned(43, false, []byte("other body"))
	tests := []struct {
		name string
		op   Op
	}{
		{"same version, other body", Op{Kind: OpSet, Key: key, Value: sameHeader}},
		{"higher version", Op{Kind: OpSet, Key: key, Value: EncodeVersioned(1000, false, []byte("body 42"))}},
		{"tombstone", Op{Kind: OpSet, Key: key, Value: EncodeVersioned(1000, true, nil)}},
		{"extra key", Op{Kind: OpSet, Key: digestKey(10000), Value: EncodeVersioned(5, false, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := digestStore(t, ops...)
			if tt.name == "same version, other body" {
				// Replace the record outright: the merge would keep the
				// greater bytes.
				if err := s.Apply([]Op{{Kind: OpSet, Key: key, Value: sameHeader}}); err != nil {
					t.Fatal(err)
				}
			} else if err := s.ApplyVersioned([]Op{tt.op}); err != nil {
				t.Fatal(err)
			}
			d := mustRangeDigest(t, s, 7, ^uint64(0))
			want := uint64(1) << DigestBucket(tt.op.Key)
			if got := d.Diff(&base); got != want {
				t.Fatalf("differing buckets %064b, want only bucket %d", got, DigestBucket(tt.op.Key))
			}
			if d.Summary() == base.Summary() {
				t.Fatal("summary unchanged")
			}
		})
	}
}

func TestStoreDigestCutoff(t *testing.T) {
	ops := digestOps(200) // versions 1..200
	base := mustRangeDigest(t, digestStore(t, ops...), 7, 100)
	if n := base.Keys(AllBuckets); n != 100 {
		t.Fatalf("digest up to version 100 counts %d keys, want 100", n)
	}
	s := digestStore(t, ops...)
	// Newer than the cutoff: not counted, whatever it replaced.
	if err := s.ApplyVersioned([]Op{
		{Kind: OpSet, Key: digestKey(150), Value: EncodeVersioned(500, false, []byte("new"))},
		{Kind: OpSet, Key: digestKey(5000), Value: EncodeVersioned(101, false, []byte("new key"))},
	}); err != nil {
		t.Fatal(err)
	}
	if d := mustRangeDigest(t, s, 7, 100); d.Diff(&base) != 0 {
		t.Fatalf("records above the cutoff changed buckets %064b", d.Diff(&base))
	}
	// At the cutoff: counted.
	if err := s.ApplyVersioned([]Op{{Kind: OpSet, Key: digestKey(6000), Value: EncodeVersioned(100, false, nil)}}); err != nil {
		t.Fatal(err)
	}
	if d := mustRangeDigest(t, s, 7, 100); d.Diff(&base) != uint64(1)<<DigestBucket(digestKey(6000)) {
		t.Fatalf("a record at the cutoff changed buckets %064b", d.Diff(&base))
	}
}

func TestStoreDigestCorrupt(t *testing.T) {
	s := digestStore(t)
	if err := s.Apply([]Op{{Kind: OpSet, Key: digestKey(1), Value: []byte("raw")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ShardRangeDigest(7, ^uint64(0)); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("digest over a non-versioned value: %v, want ErrCorruptValue", err)
	}
}

func TestStoreDigestScanBuckets(t *testing.T) {
	ops := digestOps(400)
	s := digestStore(t, ops...)
	d := mustRangeDigest(t, s, 7, ^uint64(0))
	mask := uint64(1)<<3 | uint64(1)<<17 | uint64(1)<<63
	tests := []struct {
		name   string
		mask   uint64
		budget int
		limit  int
	}{
		{"all, one page", AllBuckets, 0, 0},
		{"all, pages of 7", AllBuckets, 0, 7},
		{"mask, one page", mask, 0, 0},
		{"mask, budget 10", mask, 10, 0},
		{"mask, budget 10, pages of 2", mask, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got RangeDigest
			var after []byte
			var prev []byte
			for pages := 0; ; pages++ {
				if pages > 1000 {
					t.Fatal("no end after 1000 pages")
				}
				n := 0
				last, end, err := s.ScanBuckets(7, after, tt.mask, tt.budget, func(k, v []byte) (bool, error) {
					if tt.mask&(1<<DigestBucket(k)) == 0 {
						t.Fatalf("key %x of bucket %d outside the mask", k, DigestBucket(k))
					}
					if prev != nil && string(k) <= string(prev) {
						t.Fatalf("key %x not after %x", k, prev)
					}
					prev = append(prev[:0], k...)
					got.Add(k, v)
					n++
					return tt.limit == 0 || n < tt.limit, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if end || last == nil {
					break
				}
				after = last
			}
			if got.Diff(&d)&tt.mask != 0 || got.Keys(^tt.mask) != 0 {
				t.Fatalf("scanned buckets differ from the digest: %064b", got.Diff(&d)&tt.mask)
			}
			if bits.OnesCount64(tt.mask) < 64 && got.Keys(AllBuckets) >= 400 {
				t.Fatalf("masked scan returned %d keys", got.Keys(AllBuckets))
			}
		})
	}
	// After the last key: nothing, and the end.
	last, end, err := s.ScanBuckets(7, append(ShardPrefix(7), 0xfe), AllBuckets, 0, func(k, _ []byte) (bool, error) {
		t.Fatalf("key %x after the end", k)
		return false, nil
	})
	if err != nil || !end || last != nil {
		t.Fatalf("scan after the end: last %x, end %v, %v", last, end, err)
	}
}

// BenchmarkShardRangeDigest measures the scan behind every digest
// comparison (anti-entropy, catch-up, a lease taken over): a shard of
// 100,000 message-sized records on disk, read after a compaction.
func BenchmarkShardRangeDigest(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	const n = 100_000
	val := make([]byte, 200)
	var size int64
	for i := 0; i < n; i += 1000 {
		var ops []Op
		for j := i; j < i+1000; j++ {
			k := NewKey(7, "app", FamMsg).Str("conv").Int64(int64(j)).Str("id").Bytes()
			v := EncodeVersioned(uint64(j+1)<<16, false, val)
			ops = append(ops, Op{Kind: OpSet, Key: k, Value: v})
			size += int64(len(k) + len(v))
		}
		if err := s.ApplyVersioned(ops); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Compact(context.Background(), ShardPrefix(7), ShardEnd(7), true); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		d, err := s.ShardRangeDigest(7, ^uint64(0))
		if err != nil || d.Keys(AllBuckets) != n {
			b.Fatalf("digest of %d keys, %v", d.Keys(AllBuckets), err)
		}
	}
}
