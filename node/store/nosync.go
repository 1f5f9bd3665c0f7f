package store

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Writes without an fsync of their own (Batch.SetNoSync, PutPending of a
// NoSync write, CommitWriteNoSync) return once Pebble holds them in its
// write-ahead log's buffer, which is in the process's memory: Pebble writes
// it to the file at the next synced commit or when a 32 KiB block fills, so
// until then a killed process, not only a crashed machine, loses them. The
// store bounds that window: the first unsynced commit after a sync wakes
// the flusher, which syncs the log NoSyncFlushDelay later (one empty synced
// record, which writes and syncs everything before it). A crash of the
// process or of the machine loses at most the unsynced writes of the last
// NoSyncFlushDelay, and a store that takes none costs no wake-up.

// DefaultNoSyncFlushDelay is Config.NoSyncFlushDelay's zero value: short
// next to the seconds a client takes to notice a crash and reconnect, long
// next to the 1 ms between the syncs of a store taking messages (so the
// flush costs such a store one more sync in 100).
const DefaultNoSyncFlushDelay = 100 * time.Millisecond

// noSyncFlusher is the state of the store's flusher goroutine, which Open
// starts and Close stops.
type noSyncFlusher struct {
	delay time.Duration // negative: never (tests)
	log   *slog.Logger
	// dirty is set by an unsynced commit and cleared by the flusher just
	// before it syncs.
	dirty atomic.Bool
	// kick wakes the flusher; one slot: a full one means a flush is due
	// already.
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// noteUnsynced records an unsynced commit (call it after the commit) and
// wakes the flusher if none is due.
func (f *noSyncFlusher) noteUnsynced() {
	if f.kick != nil && f.dirty.CompareAndSwap(false, true) {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// startNoSyncFlusher starts the flusher (none with a negative delay).
func (s *Store) startNoSyncFlusher(delay time.Duration, log *slog.Logger) {
	if delay == 0 {
		delay = DefaultNoSyncFlushDelay
	}
	f := &s.noSync
	f.delay, f.log = delay, log
	if delay < 0 {
		return
	}
	f.kick, f.stop, f.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.noSyncFlushLoop()
}

func (s *Store) noSyncFlushLoop() {
	f := &s.noSync
	defer close(f.done)
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		}
		timer.Reset(f.delay)
		select {
		case <-f.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
		s.syncUnsynced()
	}
}

// syncUnsynced syncs the write-ahead log if an unsynced commit happened
// since the last such sync. Commits after dirty is cleared set it again.
func (s *Store) syncUnsynced() {
	if !s.noSync.dirty.Swap(false) {
		return
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		s.noSync.log.Warn("Syncing unsynced writes failed", "err", err)
	}
}

// stopNoSyncFlusher stops the flusher. What it had yet to sync, closing
// the database syncs: Pebble syncs its log when it closes.
func (s *Store) stopNoSyncFlusher() {
	if f := &s.noSync; f.stop != nil {
		close(f.stop)
		<-f.done
		f.stop = nil
	}
}
