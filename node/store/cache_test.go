package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// cacheKey is a replicated key of shard 3.
func cacheKey(s string) []byte { return NewKey(3, "app", FamConv).Str(s).Bytes() }

// getRecord reads key and returns its value's bytes, or "<none>".
func getRecord(t *testing.T, st *Store, key []byte) string {
	t.Helper()
	v, err := st.Get(key)
	if errors.Is(err, ErrNotFound) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	_, _, val, err := DecodeVersioned(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(val)
}

// getShared reads key through GetShared, decoding its record to its
// value's string, and returns it or "<none>"; *decodes counts the decodes.
func getShared(t *testing.T, st *Store, key []byte, decodes *int) string {
	t.Helper()
	d, err := st.GetShared(key, func(rec []byte) (any, error) {
		*decodes++
		_, _, val, err := DecodeVersioned(rec)
		if err != nil {
			return nil, err
		}
		return string(val), nil
	})
	if errors.Is(err, ErrNotFound) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.(string)
}

// cachedBytes returns what the cache's entries (and their decoded forms)
// account for.
func cachedBytes(c *readCache) int64 {
	var n int64
	for i := range c.shards {
		for k, e := range c.shards[i].entries {
			n += int64(len(k)+len(e.v)) + cacheEntryOverhead
			if e.decoded != nil {
				n += decodedSize(e.v)
			}
		}
	}
	return n
}

// TestStoreReadCacheCoherent caches a value and its decoded form by reading
// it, writes the key through each write path of the store, and reads it
// again: every path must drop the cached value and decoded form.
func TestStoreReadCacheCoherent(t *testing.T) {
	rec := func(version uint64, v string) []byte { return EncodeVersioned(version, false, []byte(v)) }
	key := cacheKey("c1")
	tests := []struct {
		name  string
		write func(t *testing.T, st *Store)
		want  string
	}{
		{"apply versioned (repair, catch-up)", func(t *testing.T, st *Store) {
			must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: rec(20, "new")}}))
		}, "new"},
		{"commit pending", func(t *testing.T, st *Store) {
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: rec(20, "new")}}}))
			if ok, err := st.CommitPending(3, 1, 20); err != nil || !ok {
				t.Fatalf("CommitPending = %v, %v", ok, err)
			}
		}, "new"},
		{"commit notice riding on the next prepare", func(t *testing.T, st *Store) {
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: rec(20, "new")}}}))
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 21, Ops: []Op{{Kind: OpSet, Key: cacheKey("c2"), Value: rec(21, "x")}}},
				PendingID{Shard: 3, Epoch: 1, ID: 20}))
		}, "new"},
		{"commit write (roll forward)", func(t *testing.T, st *Store) {
			must(t, st.CommitWrite(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: rec(20, "new")}}}))
		}, "new"},
		{"delete shard", func(t *testing.T, st *Store) { must(t, st.DeleteShard(3)) }, "<none>"},
		{"delete range", func(t *testing.T, st *Store) {
			must(t, st.Apply([]Op{{Kind: OpDeleteRange, Key: ShardPrefix(3), Value: ShardEnd(3)}}))
		}, "<none>"},
		{"delete range over every shard", func(t *testing.T, st *Store) {
			must(t, st.Apply([]Op{{Kind: OpDeleteRange, Key: ShardPrefix(0), Value: ShardEnd(0xffff)}}))
		}, "<none>"},
		{"delete ranges of two shards", func(t *testing.T, st *Store) {
			must(t, st.Apply([]Op{{Kind: OpDeleteRange, Key: ShardPrefix(9), Value: ShardEnd(9)},
				{Kind: OpDeleteRange, Key: key, Value: append(bytes.Clone(key), 0)}}))
		}, "<none>"},
		{"plain set", func(t *testing.T, st *Store) {
			must(t, st.Apply([]Op{{Kind: OpSet, Key: key, Value: rec(5, "new")}}))
		}, "new"},
		{"plain delete", func(t *testing.T, st *Store) { must(t, st.Apply([]Op{{Kind: OpDelete, Key: key}})) }, "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openMem(t, vfs.NewMem())
			defer func() { _ = st.Close() }()
			must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: rec(10, "old")}}))
			for range 2 {
				if got := getRecord(t, st, key); got != "old" {
					t.Fatalf("before the write: %q", got)
				}
			}
			if st.cache.hits.Load() == 0 {
				t.Fatal("the second read was not served from the cache")
			}
			decodes := 0
			for range 3 {
				if got := getShared(t, st, key, &decodes); got != "old" {
					t.Fatalf("shared read before the write: %q", got)
				}
			}
			if decodes != 1 || st.cache.decodedHits.Load() != 2 {
				t.Fatalf("3 shared reads of a cached value: %d decodes, %d decoded hits; want 1, 2", decodes, st.cache.decodedHits.Load())
			}
			tt.write(t, st)
			if got := getShared(t, st, key, &decodes); got != tt.want {
				t.Fatalf("shared read after the write: %q, want %q", got, tt.want)
			}
			if got := getRecord(t, st, key); got != tt.want {
				t.Fatalf("after the write: %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStoreReadCacheFillRace writes a key between a read's Pebble look-up
// and its cache fill: the fill must not store the value it read, older than
// the committed write.
func TestStoreReadCacheFillRace(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	key := cacheKey("c1")
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(10, false, []byte("old"))}}))
	st.testHookFill = func() {
		st.testHookFill = nil
		must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(20, false, []byte("new"))}}))
	}
	if got := getRecord(t, st, key); got != "old" {
		t.Fatalf("racing read: %q", got)
	}
	if got := getRecord(t, st, key); got != "new" {
		t.Fatalf("after the write: %q, want new", got)
	}
}

// TestStoreReadCacheSharedAttachRace writes a key between a shared read's
// look-up of its cached value and the keeping of the decoded form: the
// decoded form of the old value must not be kept (nor counted) with the
// entry the next read fills.
func TestStoreReadCacheSharedAttachRace(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	key := cacheKey("c1")
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(10, false, []byte("old"))}}))
	getRecord(t, st, key) // fills
	d, v, e := st.cache.shared(key)
	if d != nil || e == nil {
		t.Fatalf("shared look-up of a cached value: %v, %v", d, e)
	}
	_, _, old, _ := DecodeVersioned(v)
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(20, false, []byte("new"))}}))
	getRecord(t, st, key) // fills the new value
	st.cache.attach(key, e, string(old))
	decodes := 0
	if got := getShared(t, st, key, &decodes); got != "new" {
		t.Fatalf("shared read after the write: %q, want new", got)
	}
	if used, want := st.cache.usedBytes.Load(), cachedBytes(st.cache); used != want {
		t.Fatalf("cache counts %d bytes, its entries hold %d", used, want)
	}
}

// TestStoreReadCacheReadDuringWrite reads a key while a write of it is
// being committed: that read must not leave the value it found (older than
// the write) in the cache.
func TestStoreReadCacheReadDuringWrite(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	key := cacheKey("c1")
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(10, false, []byte("old"))}}))
	st.testHookCommit = func() {
		st.testHookCommit = nil
		if got := getRecord(t, st, key); got != "old" {
			t.Errorf("read before the commit: %q", got)
		}
	}
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: EncodeVersioned(20, false, []byte("new"))}}))
	if got := getRecord(t, st, key); got != "new" {
		t.Fatalf("after the write: %q, want new", got)
	}
}

// TestStoreReadCacheSkipsNodeLocalKeys reads a pending write's record (a
// node-local key, read once and then deleted): the cache neither holds it
// nor counts the read.
func TestStoreReadCacheSkipsNodeLocalKeys(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 5, Ops: []Op{{Kind: OpSet, Key: cacheKey("c1"), Value: EncodeVersioned(5, false, nil)}}}))
	for range 2 {
		if _, err := st.Get(pendingKey(3, 1, 5)); err != nil {
			t.Fatal(err)
		}
	}
	if h, m, b := st.cache.hits.Load(), st.cache.misses.Load(), st.cache.usedBytes.Load(); h != 0 || m != 0 || b != 0 {
		t.Fatalf("cache after reading a node-local key: %d hits, %d misses, %d bytes", h, m, b)
	}
}

// TestStoreReadCacheBounded reads more values than the cache holds: its
// bytes stay within the bound and every read is still right.
func TestStoreReadCacheBounded(t *testing.T) {
	const size = 64 << 10
	st, err := Open(Config{Dir: "/db", FS: vfs.NewMem(), ReadCacheSize: size})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	val := bytes.Repeat([]byte("v"), 500)
	var ops []Op
	for i := range 1000 {
		ops = append(ops, Op{Kind: OpSet, Key: cacheKey(fmt.Sprint(i)), Value: EncodeVersioned(1, false, append(val, fmt.Sprint(i)...))})
	}
	must(t, st.ApplyVersioned(ops))
	for i := range 1000 {
		if got := getRecord(t, st, cacheKey(fmt.Sprint(i))); got != string(val)+fmt.Sprint(i) {
			t.Fatalf("key %d: %q", i, got)
		}
		decodes := 0
		if got := getShared(t, st, cacheKey(fmt.Sprint(i)), &decodes); got != string(val)+fmt.Sprint(i) {
			t.Fatalf("key %d, shared: %q", i, got)
		}
		if used := st.cache.usedBytes.Load(); used > size {
			t.Fatalf("cache holds %d bytes, bound %d", used, size)
		}
	}
	for i := range st.cache.shards {
		sh := &st.cache.shards[i]
		grouped := 0
		for _, keys := range sh.byData {
			grouped += len(keys)
		}
		if grouped != len(sh.entries) {
			t.Fatalf("cache part %d: %d entries, %d grouped by data shard", i, len(sh.entries), grouped)
		}
	}
	if used, want := st.cache.usedBytes.Load(), cachedBytes(st.cache); used != want {
		t.Fatalf("cache counts %d bytes, its entries hold %d", used, want)
	}
	if used := st.cache.usedBytes.Load(); used < size/2 {
		t.Fatalf("cache holds %d bytes of a %d-byte bound after 500 KB of reads", used, size)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkStoreGet reads, with and without the read cache, a field doc
// whose fields were written by 20 separate updates (a conversation record:
// Pebble merges the operands on every read) and a key that does not exist
// (a send's de-duplication look-up), on a store whose 20,000 other keys are
// flushed to tables.
func BenchmarkStoreGet(b *testing.B) {
	for _, cache := range []int64{-1, 0} {
		name := "cache=on"
		if cache < 0 {
			name = "cache=off"
		}
		st, err := Open(Config{Dir: b.TempDir(), ReadCacheSize: cache, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		var ops []Op
		for i := range 20000 {
			ops = append(ops, Op{Kind: OpSet, Key: cacheKey(fmt.Sprint("m", i)), Value: EncodeVersioned(1, false, make([]byte, 200))})
		}
		if err := st.ApplyVersioned(ops); err != nil {
			b.Fatal(err)
		}
		if err := st.db.Flush(); err != nil {
			b.Fatal(err)
		}
		doc := cacheKey("doc")
		for i := range 20 {
			var fb Batch
			fb.MergeFields(doc, []Field{{Name: fmt.Sprint("f", i), Value: make([]byte, 20)}})
			rec, err := DocRecord(uint64(i+1), fb.Ops()[0].Value)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.ApplyVersioned([]Op{{Kind: OpSet, Key: doc, Value: rec}}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/field-doc", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Get(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/absent", func(b *testing.B) {
			b.ReportAllocs()
			absent := cacheKey("absent")
			for b.Loop() {
				if _, err := st.Get(absent); !errors.Is(err, ErrNotFound) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStoreReadCacheDeleteRange marks one delete range in flight and
// clears it (what a retention trim's commit adds) on a cache holding 50,000
// keys over 256 data shards: a range inside one data shard against one over
// 256 data shards (which visits every cached key).
func BenchmarkStoreReadCacheDeleteRange(b *testing.B) {
	c := newReadCache(64 << 20)
	for i := range 50000 {
		k := NewKey(uint16(i%256), "app", FamConv).Str(fmt.Sprint("c", i)).Bytes()
		_, gen, _ := c.get(k)
		c.fill(k, make([]byte, 200), gen)
	}
	conv := NewKey(7, "app", FamMsg).Str("some-conversation").Bytes()
	for _, tt := range []struct {
		name       string
		start, end []byte
	}{
		{"one-shard", conv, PrefixEnd(conv)},
		// Past every cached key (shards 0-255), so nothing is dropped, but
		// over more data shards than ranges are looked up by.
		{"many-shards", ShardPrefix(0x100), ShardPrefix(0x200)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			ops := []Op{{Kind: OpDeleteRange, Key: tt.start, Value: tt.end}}
			for b.Loop() {
				c.end(ops, c.begin(ops, nil))
			}
		})
	}
}

// BenchmarkStoreReadCacheMarks marks and unmarks the keys of a send's batch
// (message, message id, order index entries, de-duplication key): what
// every commit costs the read cache.
func BenchmarkStoreReadCacheMarks(b *testing.B) {
	c := newReadCache(DefaultReadCacheSize)
	conv := NewKey(7, "app", FamMsg).Str("some-conversation")
	var ops []Op
	for i := range 5 {
		ops = append(ops, Op{Kind: OpSet, Key: conv.Int64(int64(i)).Bytes(), Value: []byte("v")})
	}
	b.ReportAllocs()
	var buf [16]uint64
	for b.Loop() {
		c.end(ops, c.begin(ops, buf[:0]))
	}
}
