package store

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("store: not found")

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
}

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

// Store is the node's Pebble database. It is safe for concurrent use.
type Store struct {
	db *pebble.DB
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
	cache := pebble.NewCache(cfg.CacheSize)
	defer cache.Unref()
	opts := &pebble.Options{
		FS:                 cfg.FS,
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{cfg.Logger.With("component", "store")},
	}
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	}
	return &Store{db: db}, nil
}

// Close flushes and closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Get returns a copy of the value stored under key, or ErrNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, nil
}

// Batch is a set of writes applied atomically by Commit. A Batch is not safe
// for concurrent use; it must be committed or closed.
type Batch struct {
	b *pebble.Batch
}

// NewBatch returns an empty batch.
func (s *Store) NewBatch() *Batch { return &Batch{b: s.db.NewBatch()} }

// Set records a write of value under key. Both are copied.
func (b *Batch) Set(key, value []byte) { _ = b.b.Set(key, value, nil) }

// Delete records a deletion of key.
func (b *Batch) Delete(key []byte) { _ = b.b.Delete(key, nil) }

// DeleteRange records a deletion of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte) { _ = b.b.DeleteRange(start, end, nil) }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Close releases a batch that was not committed. Closing a committed batch is
// a no-op.
func (b *Batch) Close() {
	if b.b != nil {
		_ = b.b.Close()
		b.b = nil
	}
}

// Commit applies the batch atomically and durably: it returns only after the
// write-ahead log is fsync'd. The batch is released.
func (s *Store) Commit(b *Batch) error {
	if b.b == nil {
		return errors.New("store: batch already committed")
	}
	err := b.b.Commit(pebble.Sync)
	b.Close()
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
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

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("Pebble fatal error", "detail", fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}

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
