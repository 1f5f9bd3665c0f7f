package store

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The read cache keeps the values of recently read keys in memory, so the
// point reads every command repeats (a conversation's record on each send,
// a client's read state on each ack) skip Pebble: its memtable and level
// searches and the merge of a field doc's operands.
//
// An entry may also hold a decoded form of its value (Store.GetShared): a
// record the domain decodes on every command (a conversation's, on each
// send) is decoded once while its entry lives. The decoded form hangs on
// the entry, so whatever drops or replaces the entry (a write of the key,
// an eviction) drops it too: it is always the decoding of the key's value
// in Pebble.
//
// It is coherent with every write to the database because it sits under
// every one of them: all commits of shard keys go through Store.commit (Apply,
// ApplyVersioned, PutPending with the commits riding on it, CommitWrite,
// CommitPending, ResolveShard, DeleteShard, every delete range), which reads
// the keys and ranges the batch writes from the batch itself, marks them
// in flight and drops their entries before the Pebble commit (begin), and
// clears the marks after it (end), whatever its outcome. A read fills the
// cache only if no write touched its cache shard between its look-up and
// its fill (the shard's generation, raised by every begin and end) and
// none is in flight on its key: so a fill never stores a value older than
// a committed write, and an entry, while present, is the key's value in
// Pebble. Node-local keys (pending writes, terms, the lease marker, above
// every shard's keys) are not cached.
//
// The cache is bounded in bytes (ReadCacheSize, key and value plus a fixed
// overhead per entry): a fill that takes a cache shard past its part of
// the bound evicts entries of that shard in map order (random) until it
// fits again; a decoded form counts as decodedSize more bytes. It holds
// values found, never absence.
type readCache struct {
	shards        [cacheShards]cacheShard
	shardMax      int64 // bytes per shard
	hits          atomic.Uint64
	misses        atomic.Uint64
	decodedHits   atomic.Uint64
	decodedMisses atomic.Uint64
	usedBytes     atomic.Int64
}

// cacheEntry is a cached value and, once a GetShared decoded it, its
// decoded form. Its cache shard's mu guards decoded; v is never modified.
type cacheEntry struct {
	v       []byte
	decoded any
}

// decodedSize is what a decoded form counts towards the cache's bound: its
// value's length again (a decoded record holds about as many bytes of
// strings as its encoding) plus decodedOverhead for its headers.
func decodedSize(v []byte) int64 { return int64(len(v)) + decodedOverhead }

// decodedOverhead is counted per decoded form on top of its value's
// length (struct, slice, map and string headers).
const decodedOverhead = 256

// cacheShards is the number of independently locked parts of the cache.
const cacheShards = 16

// cacheEntryOverhead is counted per entry on top of its key and value (two
// map slots, string and slice headers).
const cacheEntryOverhead = 96

// DefaultReadCacheSize is the read cache's bound when Config.ReadCacheSize
// is zero.
const DefaultReadCacheSize = 32 << 20

// cacheShard is one part of the cache. mu, a leaf lock, guards all of it;
// it is never held across a Pebble call.
type cacheShard struct {
	mu sync.Mutex
	// gen rises at every begin and end of a write touching this shard:
	// a fill checks it did not move since its look-up.
	gen     uint64
	entries map[string]*cacheEntry
	// byData groups the keys of entries by their first two bytes (the
	// data shard, see ShardOf): a delete range visits only the groups it
	// spans.
	byData map[uint16]map[string]struct{}
	// writing counts the writes in flight per key hash (a collision only
	// keeps another key from being filled meanwhile), ranges the delete
	// ranges in flight (they may cover any key of the shard).
	writing map[uint64]int
	ranges  int
	bytes   int64
}

func newReadCache(size int64) *readCache {
	c := &readCache{shardMax: size / cacheShards}
	for i := range c.shards {
		c.shards[i].entries = map[string]*cacheEntry{}
		c.shards[i].byData = map[uint16]map[string]struct{}{}
		c.shards[i].writing = map[uint64]int{}
	}
	return c
}

// cacheable reports whether key's value may be cached: a shard's key (two
// bytes of shard at least), not a node-local key.
func cacheable(key []byte) bool { return len(key) >= 2 && !bytes.HasPrefix(key, nodeLocalPrefix) }

// dataGroup returns the data shard of a key or range bound: its first two
// bytes, padded with zeros.
func dataGroup(key []byte) uint16 {
	var b [2]byte
	copy(b[:], key)
	return binary.BigEndian.Uint16(b[:])
}

// nodeLocalPrefix starts every node-local key (pending writes, terms, the
// lease marker): above every shard's keys.
var nodeLocalPrefix = []byte{0xff, 0xff, 0xff}

// shard returns key's cache shard and key's hash.
func (c *readCache) shard(key []byte) (*cacheShard, uint64) {
	h := xxhash.Sum64(key)
	return &c.shards[h%cacheShards], h
}

// get returns a copy of key's cached value and true, or the shard's
// generation to hand to fill.
func (c *readCache) get(key []byte) ([]byte, uint64, bool) {
	sh, _ := c.shard(key)
	sh.mu.Lock()
	e, ok := sh.entries[string(key)]
	gen := sh.gen
	sh.mu.Unlock()
	if ok {
		c.hits.Add(1)
		return bytes.Clone(e.v), 0, true
	}
	c.misses.Add(1)
	return nil, gen, false
}

// fill caches v (which the caller no longer modifies) as key's value, read
// from Pebble after get returned gen, unless a write touched the shard
// since or is in flight on key. key is cacheable (so is get's).
func (c *readCache) fill(key, v []byte, gen uint64) {
	sh, h := c.shard(key)
	size := int64(len(key)+len(v)) + cacheEntryOverhead
	if size > c.shardMax {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen || sh.ranges > 0 || sh.writing[h] > 0 {
		return
	}
	ks := string(key)
	c.dropLocked(sh, ks)
	if v == nil {
		v = []byte{}
	}
	sh.entries[ks] = &cacheEntry{v: v}
	g := dataGroup(key)
	if sh.byData[g] == nil {
		sh.byData[g] = map[string]struct{}{}
	}
	sh.byData[g][ks] = struct{}{}
	c.account(sh, size)
	c.evictLocked(sh, ks)
}

// evictLocked drops entries of sh other than keep until sh is within its
// bound. sh.mu is held.
func (c *readCache) evictLocked(sh *cacheShard, keep string) {
	for k := range sh.entries {
		if sh.bytes <= c.shardMax {
			break
		}
		if k != keep {
			c.dropLocked(sh, k)
		}
	}
}

// dropLocked removes key's entry, if any, from sh. sh.mu is held.
func (c *readCache) dropLocked(sh *cacheShard, key string) {
	if old, ok := sh.entries[key]; ok {
		delete(sh.entries, key)
		g := uint16(key[0])<<8 | uint16(key[1])
		if delete(sh.byData[g], key); len(sh.byData[g]) == 0 {
			delete(sh.byData, g)
		}
		size := int64(len(key)+len(old.v)) + cacheEntryOverhead
		if old.decoded != nil {
			size += decodedSize(old.v)
		}
		c.account(sh, -size)
	}
}

// shared returns key's cached entry's decoded form, or (with ok) its value
// (not to be modified) and the entry, to hand to attach with the decoded
// form; neither when key is not cached.
func (c *readCache) shared(key []byte) (decoded any, v []byte, e *cacheEntry) {
	sh, _ := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e = sh.entries[string(key)]
	switch {
	case e == nil:
		return nil, nil, nil
	case e.decoded != nil:
		c.decodedHits.Add(1)
		return e.decoded, nil, nil
	}
	return nil, e.v, e
}

// attach keeps decoded as the decoded form of entry e (returned by shared
// for key), unless e left the cache since (its key was written, or it was
// evicted) or has one already.
func (c *readCache) attach(key []byte, e *cacheEntry, decoded any) {
	sh, _ := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.entries[string(key)] != e || e.decoded != nil {
		return
	}
	e.decoded = decoded
	c.account(sh, decodedSize(e.v))
	c.evictLocked(sh, string(key))
}

func (c *readCache) account(sh *cacheShard, delta int64) {
	sh.bytes += delta
	c.usedBytes.Add(delta)
}

// begin marks the keys ops write (see batchWrites) as in flight and drops
// their entries; the caller commits them to Pebble and then calls
// end(ops, hashes) with what begin returned, whatever the commit's
// outcome. hashes (appended to buf) are the hashes of ops' keys, so end
// need not compute them again. The delete ranges of ops (a shard's, a
// conversation's messages) are marked in every cache shard and drop the
// entries they cover in one pass over each.
func (c *readCache) begin(ops []Op, buf []uint64) (hashes []uint64) {
	hashes = buf[:0]
	var ranges []Op
	for _, op := range ops {
		var h uint64
		switch {
		case op.Kind == OpDeleteRange:
			if cacheable(op.Key) {
				ranges = append(ranges, op)
			}
		case cacheable(op.Key):
			h = xxhash.Sum64(op.Key)
			sh := &c.shards[h%cacheShards]
			sh.mu.Lock()
			sh.gen++
			sh.writing[h]++
			if _, ok := sh.entries[string(op.Key)]; ok { // no string made for a key not cached
				c.dropLocked(sh, string(op.Key))
			}
			sh.mu.Unlock()
		}
		hashes = append(hashes, h)
	}
	if len(ranges) > 0 {
		c.beginRanges(ranges)
	}
	return hashes
}

// beginRanges marks delete ranges in flight in every shard and drops the
// entries they cover, visiting only the keys of the data shards the ranges
// span (a conversation's or a shard's range spans one); ranges spanning
// more than maxRangeGroups data shards visit every key.
func (c *readCache) beginRanges(ranges []Op) {
	var groups []uint16
	for _, r := range ranges {
		for g := int(dataGroup(r.Key)); g <= int(dataGroup(r.Value)) && len(groups) <= maxRangeGroups; g++ {
			if !slices.Contains(groups, uint16(g)) {
				groups = append(groups, uint16(g))
			}
		}
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		sh.ranges++
		if len(groups) > maxRangeGroups {
			for k := range sh.entries {
				if inRanges(k, ranges) {
					c.dropLocked(sh, k)
				}
			}
		} else {
			for _, g := range groups {
				for k := range sh.byData[g] {
					if inRanges(k, ranges) {
						c.dropLocked(sh, k)
					}
				}
			}
		}
		sh.mu.Unlock()
	}
}

// maxRangeGroups bounds the data shards a batch's delete ranges are looked
// up by; beyond it they visit every cached key.
const maxRangeGroups = 16

// inRanges reports whether key lies in one of the delete ranges
// [Key, Value).
func inRanges(key string, ranges []Op) bool {
	for _, r := range ranges {
		if key >= string(r.Key) && key < string(r.Value) {
			return true
		}
	}
	return false
}

// end clears the marks begin(ops) set; hashes is what it returned.
func (c *readCache) end(ops []Op, hashes []uint64) {
	ranged := false
	for i, op := range ops {
		if op.Kind == OpDeleteRange {
			ranged = ranged || cacheable(op.Key)
			continue
		}
		if !cacheable(op.Key) {
			continue
		}
		h := hashes[i]
		sh := &c.shards[h%cacheShards]
		sh.mu.Lock()
		sh.gen++
		if n := sh.writing[h]; n > 1 {
			sh.writing[h] = n - 1
		} else {
			delete(sh.writing, h)
		}
		sh.mu.Unlock()
	}
	if ranged {
		for i := range c.shards {
			sh := &c.shards[i]
			sh.mu.Lock()
			sh.gen++
			sh.ranges--
			sh.mu.Unlock()
		}
	}
}

// collectors returns the cache's metrics.
func (c *readCache) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_read_cache_hits_total",
			Help: "Point reads served from the store's read cache."}, func() float64 { return float64(c.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_read_cache_misses_total",
			Help: "Point reads the store's read cache did not hold (read from Pebble)."}, func() float64 { return float64(c.misses.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_read_cache_bytes",
			Help: "Bytes held by the store's read cache (keys, values and a fixed overhead per entry)."},
			func() float64 { return float64(c.usedBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_read_cache_decoded_hits_total",
			Help: "Shared reads (Store.GetShared) served the decoded form the store's read cache held."},
			func() float64 { return float64(c.decodedHits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_read_cache_decoded_misses_total",
			Help: "Shared reads (Store.GetShared) that decoded the value (the read cache held none decoded)."},
			func() float64 { return float64(c.decodedMisses.Load()) }),
	}
}
