package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrLocked is returned by Open when another process holds the
// directory's lock: a node is running on it.
var ErrLocked = errors.New("store: the data directory is locked by another process (a node running on it)")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("store: closed")

// Config configures a Store.
type Config struct {
	// Dir is the database directory. Required.
	Dir string
	// FS is the filesystem. Zero value means the OS filesystem; tests use
	// vfs.NewMem().
	FS vfs.FS
	// CacheSize is the block cache size in bytes. Zero value means 64 MiB.
	CacheSize int64
	// Logger receives Pebble's log lines. Zero value means slog.Default().
	Logger *slog.Logger
	// ReadCacheSize bounds the read cache (cache.go) in bytes: the values
	// of recently read keys, kept coherent with every write. Zero value
	// means DefaultReadCacheSize (32 MiB); negative disables it.
	ReadCacheSize int64
	// AbsentFilterSize bounds the absence filters of de-duplication keys
	// (absent.go) in bytes, all shards together. Zero value means
	// DefaultAbsentFilterSize (64 MiB); negative disables them.
	AbsentFilterSize int64
	// Registerer receives the read cache's, the absence filter's and the
	// change log's metrics (imnode_store_read_cache_*,
	// imnode_store_absent_*, imnode_store_change_log_*). Nil means none
	// are registered.
	Registerer prometheus.Registerer
	// NoSyncFlushDelay bounds how long a write without an fsync of its own
	// (Batch.SetNoSync) stays unsynced: the store syncs its log that long
	// after the first such write (nosync.go). Zero value means
	// DefaultNoSyncFlushDelay (100 ms); negative means never (tests only:
	// such writes then wait for the next synced commit).
	NoSyncFlushDelay time.Duration
	// FaultDiskFull, when set and true, fails every write to the
	// filesystem with ENOSPC (fault injection: disk-full tests). Nil means
	// no injection.
	FaultDiskFull *atomic.Bool
	// Now is the clock that decides when a whole-record tombstone has
	// outlived RecordTombstoneGrace (purge.go). Zero value means time.Now.
	Now func() time.Time
	// MinFreeBytes is the free-space reserve of the data directory's
	// filesystem (diskguard.go): below it the store refuses commits that
	// add data (ErrDiskLow) until free space is back above it plus a
	// quarter. Zero value (or negative) means no guard; the node sets
	// DefaultMinFree of its disk's size unless told otherwise.
	MinFreeBytes int64
	// DiskCheckInterval is how often the guard reads the free space, on top
	// of a check after every 16 MiB committed. Zero value means
	// DefaultDiskCheckInterval (1 s).
	DiskCheckInterval time.Duration
	// StatFS returns the free space of the filesystem holding dir, in bytes
	// (fault injection and tests: a disk that looks full). Nil means
	// statfs(2) (DiskSpace).
	StatFS func(dir string) (free uint64, err error)
}

// defaultNow is Config.Now's zero value. The package's tests, whose
// records carry small versions (times near the Unix epoch), set it to the
// epoch so that none of their tombstones is past its grace.
var defaultNow = time.Now

// Validate reports a configuration error.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("store: Dir is required")
	}
	if c.CacheSize < 0 {
		return errors.New("store: CacheSize must not be negative")
	}
	return nil
}

// Write path options of the Pebble database (see open).
//
// walMinSyncInterval is the least time from the end of one WAL sync to the
// start of the next: 1 ms, against 0.5 ms before, syncs a store taking 4,000
// synced commits a second about a third less often, for 14% less store CPU
// per commit and 0.3-0.5 ms more mean commit latency; 2 ms saves no more CPU
// and adds twice the latency (docs/benchmarks.md;
// BenchmarkStoreSyncedCommitsPaced). A commit waits only when
// it comes within the interval of the last sync: an idle store's next
// commit syncs at once.
const (
	memTableSize       = 16 << 20
	walMinSyncInterval = time.Millisecond
)

// PebbleFormat is the Pebble format major version this build creates new
// databases at and accepts. An existing database keeps the format it has
// (Open never raises it); Upgrade raises an older one to PebbleFormat. A
// database at a newer format (raised by a newer imnode) is refused. Raise
// this constant only together with a release note that tells operators to
// run `imnode upgrade-store`.
const PebbleFormat = pebble.FormatValueSeparation

// Store is the node's Pebble database. It is safe for concurrent use.
type Store struct {
	db *pebble.DB
	// plainMu orders plain batches: one with OpMergeFields (a
	// read-modify-write) holds it exclusively from its reads to its
	// commit, others share it. Versioned batches need no order.
	plainMu sync.RWMutex
	// epochs caches the shards' recorded terms (pending.go).
	epochs epochCache
	// recent keeps the ops of writes stored pending lately (pending.go).
	recent recentPending
	// changes is the change log's state (changes.go).
	changes changeLog
	// cache holds recently read values (nil: disabled); every commit
	// keeps it coherent (see cache.go).
	cache *readCache
	// absent answers lookups of de-duplication keys the store does not
	// hold (nil: disabled); every commit feeds it (see absent.go).
	absent *absentFilter
	// noSync syncs unsynced commits within a bound (nosync.go).
	noSync noSyncFlusher
	// disk is the free-space guard (diskguard.go).
	disk diskGuard
	// purgeMu orders tombstone purges after commits: every commit holds
	// it shared from before its batch is applied until it is; PurgeShard
	// holds it exclusively from its check that a key still holds the
	// expired tombstone it found until its delete is applied (purge.go).
	purgeMu sync.RWMutex
	// now is the clock of tombstone expiry (purge.go).
	now func() time.Time
	// purge counts PurgeShard's work.
	purge purgeMetrics
	// testHookFill and testHookCommit, when set (tests only), run in Get
	// between the Pebble read and the cache fill, and in commit between
	// marking the keys in flight and the Pebble commit.
	testHookFill, testHookCommit func()
	// testHookPurge, when set (tests only), runs in PurgeShard between its
	// checks and its commit.
	testHookPurge func()
}

// Open opens (creating if needed) the database in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = defaultNow
	}
	format, err := openFormat(cfg)
	if err != nil {
		return nil, err
	}
	db, err := open(cfg, format)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, now: cfg.Now, purge: newPurgeMetrics()}
	if err := s.openChanges(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := register(cfg.Registerer, append(s.changes.collectors(), s.purge.purged)); err != nil {
		_ = db.Close()
		return nil, err
	}
	if cfg.ReadCacheSize == 0 {
		cfg.ReadCacheSize = DefaultReadCacheSize
	}
	if cfg.ReadCacheSize > 0 {
		s.cache = newReadCache(cfg.ReadCacheSize)
		if err := register(cfg.Registerer, s.cache.collectors()); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	if err := s.openAbsent(cfg); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.openDiskGuard(cfg); err != nil {
		if s.absent != nil {
			s.absent.close()
		}
		_ = db.Close()
		return nil, err
	}
	s.startNoSyncFlusher(cfg.NoSyncFlushDelay, cfg.Logger)
	return s, nil
}

// register registers cs with reg (nil: none).
func register(reg prometheus.Registerer, cs []prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("store: register metrics: %w", err)
		}
	}
	return nil
}

// openFormat returns the format to open cfg.Dir at: its current one, or
// PebbleFormat for a new database. A newer one is an error.
func openFormat(cfg Config) (pebble.FormatMajorVersion, error) {
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	desc, err := pebble.Peek(cfg.Dir, fs)
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		return PebbleFormat, nil
	case err != nil:
		return 0, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	case !desc.Exists:
		return PebbleFormat, nil
	case desc.FormatMajorVersion > PebbleFormat:
		return 0, fmt.Errorf("store: open %s: store format %d is newer than this imnode's %d (raised by a newer imnode's upgrade-store): run that version",
			cfg.Dir, desc.FormatMajorVersion, PebbleFormat)
	}
	return desc.FormatMajorVersion, nil
}

func open(cfg Config, format pebble.FormatMajorVersion) (*pebble.DB, error) {
	if full := cfg.FaultDiskFull; full != nil {
		fs := cfg.FS
		if fs == nil {
			fs = vfs.Default
		}
		cfg.FS = errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
				return syscall.ENOSPC
			}
			return nil
		}))
	}
	cache := pebble.NewCache(cfg.CacheSize)
	defer cache.Unref()
	log := cfg.Logger.With("component", "store")
	opts := &pebble.Options{
		FS:                 cfg.FS,
		Cache:              cache,
		FormatMajorVersion: format,
		Logger:             pebbleLogger{log},
		Merger:             lwwMerger,
		// Write path tuning (docs/benchmarks.md). A chat write is small and
		// every one is fsync'd: larger memtables flush a quarter as often,
		// and more of them, and more L0 files, may wait for a flush or a
		// compaction before writes stall (a stall holds every commit, the
		// slow tail of the send latency).
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: 4,
		L0StopWritesThreshold:       24,
		// Concurrent commits that arrive within this interval of the last
		// WAL sync share the next one instead of each starting its own.
		WALMinSyncInterval: func() time.Duration { return walMinSyncInterval },
		EventListener:      stallLogger(log),
	}
	// A bloom filter per table (10 bits a key, about 1% false positives)
	// lets a point read skip the tables that lack its key: a send looks up
	// a de-duplication key that almost never exists, which without
	// filters seeks the index of every L0 table and level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(cfg.Dir, opts)
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, cfg.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	}
	return db, nil
}

// stallLogger logs Pebble's write stalls (every commit waits for a flush or
// an L0 compaction) with their reason and length.
func stallLogger(log *slog.Logger) *pebble.EventListener {
	var began atomic.Int64
	return &pebble.EventListener{
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			began.Store(time.Now().UnixNano())
			log.Warn("Store write stall: commits wait", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			log.Warn("Store write stall ended", "took", time.Since(time.Unix(0, began.Load())).Round(time.Millisecond))
		},
	}
}

// Upgrade raises the database in cfg.Dir to PebbleFormat (the explicit step
// `imnode upgrade-store` runs with the node stopped) and returns the format
// it had before. A database already at PebbleFormat is left as is.
func Upgrade(cfg Config) (before pebble.FormatMajorVersion, err error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 8 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	before, err = openFormat(cfg)
	if err != nil {
		return 0, err
	}
	db, err := open(cfg, before)
	if err != nil {
		return 0, err
	}
	if err := db.RatchetFormatMajorVersion(PebbleFormat); err != nil {
		_ = db.Close()
		return before, fmt.Errorf("store: upgrade %s to format %d: %w", cfg.Dir, PebbleFormat, err)
	}
	if err := db.Close(); err != nil {
		return before, fmt.Errorf("store: close: %w", err)
	}
	return before, nil
}

// Format returns the database's Pebble format major version.
func (s *Store) Format() pebble.FormatMajorVersion { return s.db.FormatMajorVersion() }

// Close flushes and closes the database.
func (s *Store) Close() error {
	s.stopNoSyncFlusher()
	s.disk.close()
	if s.absent != nil {
		s.absent.close()
	}
	err := s.db.Close()
	s.changes.close()
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Get returns a copy of the value stored under key, or ErrNotFound. It is
// served from the read cache when the cache holds key, and a
// de-duplication key the absence filter proves absent is not looked up.
func (s *Store) Get(key []byte) ([]byte, error) {
	if s.absent != nil && s.absent.lookup(key) {
		return nil, ErrNotFound
	}
	var gen uint64
	cached := s.cache != nil && cacheable(key)
	if cached {
		v, g, ok := s.cache.get(key)
		if ok {
			return v, nil
		}
		gen = g
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	if cached {
		if s.testHookFill != nil {
			s.testHookFill()
		}
		s.cache.fill(key, bytes.Clone(out), gen)
	}
	return out, nil
}

// GetShared returns decode's result for the record Get would return for
// key (an error from Get, ErrNotFound included, or from decode is
// returned as is). While the read cache holds key's value it keeps that
// result with it and returns it again without decoding, until a write of
// key or an eviction drops the entry: the result is shared by every
// caller, and neither it nor the record decode got may be modified (decode
// may keep the record). It is the one decoded form of the key's current
// value as long as decode depends on the record only.
func (s *Store) GetShared(key []byte, decode func(rec []byte) (any, error)) (any, error) {
	if s.cache == nil || !cacheable(key) {
		return getDecoded(s, key, decode)
	}
	d, v, e := s.cache.shared(key)
	if d != nil {
		return d, nil
	}
	s.cache.decodedMisses.Add(1)
	if e == nil {
		return getDecoded(s, key, decode) // fills the cache: the next call decodes and keeps
	}
	d, err := decode(v)
	if err == nil && d != nil {
		s.cache.attach(key, e, d)
	}
	return d, err
}

func getDecoded(kv interface{ Get([]byte) ([]byte, error) }, key []byte, decode func([]byte) (any, error)) (any, error) {
	rec, err := kv.Get(key)
	if err != nil {
		return nil, err
	}
	return decode(rec)
}

// SharedGetter is implemented by a KV whose reads may keep a decoded form
// of a value (Store.GetShared describes the contract): the domain decodes
// a hot record once rather than on every command.
type SharedGetter interface {
	GetShared(key []byte, decode func(v []byte) (any, error)) (any, error)
}

var _ SharedGetter = (*Store)(nil)

// KV is what the domain packages (conversation, session, storage) read and
// write through. *Store implements it for one node's own database; the
// cluster implements it by routing each key to the coordinator of its shard
// (the first two bytes of every key). A Scan's bounds must lie within one
// shard.
type KV interface {
	Get(key []byte) ([]byte, error)
	NewBatch() *Batch
	Commit(b *Batch) error
	Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error
	ScanPrefix(prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error
}

var _ KV = (*Store)(nil)

// OpKind is the kind of one write in a Batch.
type OpKind uint8

// Write kinds.
const (
	OpSet OpKind = iota + 1
	OpDelete
	// OpDeleteRange deletes [Key, Value).
	OpDeleteRange
	// OpMergeFields updates some fields of the fields doc at Key; Value
	// holds the fields without versions (see Batch.MergeFields). The
	// cluster's coordinator turns it into a versioned VersionDoc record;
	// the plain Store merges it into the stored fields value.
	OpMergeFields
)

// Op is one write: set Key to Value, delete Key, delete [Key, Value), or
// merge the fields in Value into the fields doc at Key.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
	// Version is the HLC version a cluster KV's coordinator gives the
	// write (each field, for OpMergeFields); zero means one it takes when
	// it applies the write. The plain Store ignores it.
	Version uint64
}

// Batch is a list of writes applied atomically by Store.Commit (a cluster
// KV splits it by shard: atomic per shard). A Batch is not safe for
// concurrent use.
type Batch struct {
	ops    []Op
	noSync bool
}

// SetNoSync marks the batch as not waiting for an fsync of its own: Commit
// returns once the batch is in the write-ahead log (and, through a cluster
// KV, pending on W replicas' logs), which the next synced commit of the
// same store syncs too. A crash may lose it, whole, never in part, and
// never a write committed after it that was synced; use it only for state
// a lost write leaves merely older (receiver acks, read pointers).
func (b *Batch) SetNoSync() { b.noSync = true }

// NoSync reports whether SetNoSync was called.
func (b *Batch) NoSync() bool { return b.noSync }

// NewBatch returns an empty batch.
func (s *Store) NewBatch() *Batch { return &Batch{} }

// Set records a write of value under key. Both are copied.
func (b *Batch) Set(key, value []byte) {
	b.ops = append(b.ops, Op{Kind: OpSet, Key: clone(key), Value: clone(value)})
}

// SetOwned is Set without the copies: the batch takes key and value, and
// the caller must not modify them afterwards (a key and a value built for
// this write only).
func (b *Batch) SetOwned(key, value []byte) {
	b.ops = append(b.ops, Op{Kind: OpSet, Key: key, Value: value})
}

// Delete records a deletion of key.
func (b *Batch) Delete(key []byte) { b.ops = append(b.ops, Op{Kind: OpDelete, Key: clone(key)}) }

// DeleteOwned is Delete without the copy: the batch takes key, which the
// caller must not modify afterwards.
func (b *Batch) DeleteOwned(key []byte) { b.ops = append(b.ops, Op{Kind: OpDelete, Key: key}) }

// Grow makes room for n more writes, so recording them allocates once.
func (b *Batch) Grow(n int) { b.ops = slices.Grow(b.ops, n) }

// DeleteRange records a deletion of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, Op{Kind: OpDeleteRange, Key: clone(start), Value: clone(end)})
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return len(b.ops) == 0 }

// Ops returns the recorded writes in order. The slice is shared.
func (b *Batch) Ops() []Op { return b.ops }

// Close releases a batch that was not committed. It is a no-op kept so
// callers release batches on every path.
func (b *Batch) Close() {}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// SplitByShard groups ops by the shard of their keys (see ShardOf), keeping
// their order within each shard; shards lists the shards in order of first
// appearance.
func SplitByShard(ops []Op) (shards []uint16, parts map[uint16][]Op, err error) {
	one, ok, err := oneShard(ops)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		// The common batch (a send's): its ops are the one part, shared
		// with ops but capped, so an append to the part copies.
		return []uint16{one}, map[uint16][]Op{one: slices.Clip(ops)}, nil
	}
	parts = map[uint16][]Op{}
	for _, op := range ops {
		shard, err := ShardOf(op.Key)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := parts[shard]; !ok {
			shards = append(shards, shard)
		}
		parts[shard] = append(parts[shard], op)
	}
	return shards, parts, nil
}

// oneShard returns the shard of every op of ops, true, when they share
// one (and ops is not empty).
func oneShard(ops []Op) (uint16, bool, error) {
	if len(ops) == 0 {
		return 0, false, nil
	}
	first, err := ShardOf(ops[0].Key)
	if err != nil {
		return 0, false, err
	}
	for _, op := range ops[1:] {
		shard, err := ShardOf(op.Key)
		if err != nil {
			return 0, false, err
		}
		if shard != first {
			return 0, false, nil
		}
	}
	return first, true, nil
}

// Commit applies the batch atomically and durably: it returns only after the
// write-ahead log is fsync'd (unless the batch is SetNoSync). While the disk
// is low (diskguard.go) a batch that sets or merges a key is refused with
// ErrDiskLow; one that only deletes passes.
func (s *Store) Commit(b *Batch) error {
	if err := s.disk.refuseAdds(b.ops); err != nil {
		return err
	}
	return s.applyPlain(b.ops, syncOpts(!b.noSync))
}

// Apply applies ops atomically and durably (fsync'd). An OpMergeFields
// merges its fields into the key's fields value (see DecodeFields), which
// it reads under a lock held until the commit, so concurrent batches
// compose as if applied one after the other. While the disk is low, ops
// that set or merge a key are refused like Commit's.
func (s *Store) Apply(ops []Op) error {
	if err := s.disk.refuseAdds(ops); err != nil {
		return err
	}
	return s.applyPlain(ops, pebble.Sync)
}

// ApplyInternal is Apply for the node's own small bookkeeping records (the
// replicas' lease grant marker), which the node needs to stay correct: it
// passes while the disk is low (diskguard.go). Not for data.
func (s *Store) ApplyInternal(ops []Op) error { return s.applyPlain(ops, pebble.Sync) }

func (s *Store) applyPlain(ops []Op, opts *pebble.WriteOptions) error {
	if slices.ContainsFunc(ops, func(op Op) bool { return op.Kind == OpMergeFields }) {
		s.plainMu.Lock()
		defer s.plainMu.Unlock()
		return s.apply(ops, false, s.db.NewIndexedBatch(), opts)
	}
	s.plainMu.RLock()
	defer s.plainMu.RUnlock()
	return s.apply(ops, false, s.db.NewBatch(), opts)
}

// syncOpts returns pebble.Sync for a durable commit, else pebble.NoSync.
func syncOpts(durable bool) *pebble.WriteOptions {
	if durable {
		return pebble.Sync
	}
	return pebble.NoSync
}

// apply commits ops as one batch pb with opts; with versioned, OpSet values
// are versioned records merged last-writer-wins (see ApplyVersioned). An
// OpMergeFields needs an indexed pb and the exclusive plainMu.
func (s *Store) apply(ops []Op, versioned bool, pb *pebble.Batch, opts *pebble.WriteOptions) error {
	defer func() { _ = pb.Close() }()
	if err := addOps(pb, ops, versioned); err != nil {
		return err
	}
	if versioned {
		tk, err := s.logChanges(ops)
		defer tk.done()
		if err != nil {
			return err
		}
		if err := s.commit(pb, opts); err != nil {
			return err
		}
		tk.commit()
		return nil
	}
	return s.commit(pb, opts)
}

// commit commits pb with opts, keeping the read cache coherent and feeding
// the absence filter: every write of shard keys goes through here. The keys
// and ranges they see are read from pb itself, so no write can leave one
// out.
func (s *Store) commit(pb *pebble.Batch, opts *pebble.WriteOptions) error {
	s.purgeMu.RLock()
	defer s.purgeMu.RUnlock()
	return s.commitLocked(pb, opts)
}

// commitLocked is commit for a caller that holds purgeMu (shared or
// exclusive).
func (s *Store) commitLocked(pb *pebble.Batch, opts *pebble.WriteOptions) error {
	if s.cache != nil || s.absent != nil {
		var buf [16]Op
		written, err := batchWrites(pb, buf[:0])
		if err != nil {
			return err
		}
		if s.absent != nil {
			s.absent.begin(written)
			defer s.absent.end()
		}
		if s.cache != nil {
			var hbuf [16]uint64
			hashes := s.cache.begin(written, hbuf[:0])
			defer s.cache.end(written, hashes)
		}
		if s.testHookCommit != nil {
			s.testHookCommit()
		}
	}
	n := pb.Len()
	if err := pb.Commit(opts); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	s.disk.noteWritten(n)
	if !opts.Sync {
		s.noSync.noteUnsynced()
	}
	return nil
}

// batchWrites appends to out what pb writes: an OpDelete per key deleted,
// an OpSet per key otherwise written (set or merged; Value: the record), an
// OpDeleteRange per deleted range. The slices alias pb.
func batchWrites(pb *pebble.Batch, out []Op) ([]Op, error) {
	r := pb.Reader()
	for {
		kind, key, value, ok, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("store: read batch: %w", err)
		}
		if !ok {
			return out, nil
		}
		switch kind {
		case pebble.InternalKeyKindRangeDelete:
			out = append(out, Op{Kind: OpDeleteRange, Key: key, Value: value})
		case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
			out = append(out, Op{Kind: OpDelete, Key: key})
		default:
			out = append(out, Op{Kind: OpSet, Key: key, Value: value})
		}
	}
}

// addOps adds ops to pb as apply describes.
func addOps(pb *pebble.Batch, ops []Op, versioned bool) error {
	for _, op := range ops {
		var err error
		switch op.Kind {
		case OpSet:
			if !versioned {
				err = pb.Set(op.Key, op.Value, nil)
				break
			}
			if err := validRecord(op.Value); err != nil {
				return fmt.Errorf("%w: key %x", err, op.Key)
			}
			err = pb.Merge(op.Key, op.Value, nil)
		case OpMergeFields:
			if versioned {
				return fmt.Errorf("%w: key %x: field update without a version", ErrCorruptValue, op.Key)
			}
			err = mergeFieldsInBatch(pb, op)
		case OpDelete:
			err = pb.Delete(op.Key, nil)
		case OpDeleteRange:
			err = pb.DeleteRange(op.Key, op.Value, nil)
		default:
			err = fmt.Errorf("unknown op kind %d", op.Kind)
		}
		if err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	return nil
}

// Scan calls fn for every key in [lower, upper) in ascending order, or
// descending if reverse, until fn returns false or an error. A nil upper
// means no upper bound. fn must not retain k or v.
func (s *Store) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: iterator: %w", err)
	}
	valid := it.First
	next := it.Next
	if reverse {
		valid, next = it.Last, it.Prev
	}
	for ok := valid(); ok; ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("store: read value: %w", err)
		}
		cont, err := fn(it.Key(), v)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !cont {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: iterate: %w", err)
	}
	return nil
}

// ScanPrefix is Scan over every key starting with prefix.
func (s *Store) ScanPrefix(prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	return s.Scan(prefix, PrefixEnd(prefix), reverse, fn)
}

// DiskUsage returns the approximate size of the database on disk in bytes.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// pebbleLogger adapts slog to Pebble's logger.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("Pebble", "detail", fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("Pebble", "detail", fmt.Sprintf(format, args...))
}

// Fatalf stops the process: Pebble cannot go on. A full disk is an
// operational condition, not a bug: it exits with status 3 and a clear
// line instead of a panic's stack trace.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, syscall.ENOSPC.Error()) {
		p.l.Error("Disk full: the store cannot write, stopping the node; free space and start it again", "detail", msg)
		os.Exit(exitDiskFull)
	}
	p.l.Error("Pebble fatal error", "detail", msg)
	panic(msg)
}

// exitDiskFull is the exit status of a node stopped by a full disk.
const exitDiskFull = 3

// Checkpoint writes a consistent, openable copy of the database into dir,
// which must not exist. Immutable files are hard-linked when dir is on the
// same filesystem, so a checkpoint is cheap; the copy is fsync'd before
// Checkpoint returns. Writes continue while it runs.
func (s *Store) Checkpoint(dir string) error {
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("store: checkpoint %s: %w", dir, err)
	}
	return nil
}

// mergeFieldsInBatch applies an OpMergeFields to the fields value of its
// key as read through the indexed batch pb (earlier ops of the batch
// included).
func mergeFieldsInBatch(pb *pebble.Batch, op Op) error {
	var cur []byte
	v, closer, err := pb.Get(op.Key)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		cur = append([]byte(nil), v...)
		_ = closer.Close()
	}
	next, err := mergePlainFields(cur, op.Value)
	if err != nil {
		return fmt.Errorf("%w: key %x", err, op.Key)
	}
	if next == nil {
		return pb.Delete(op.Key, nil)
	}
	return pb.Set(op.Key, next, nil)
}
