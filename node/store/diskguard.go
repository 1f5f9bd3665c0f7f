package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The free-space guard. A node must never reach a full disk: Pebble fails
// a write with ENOSPC by stopping the process (pebbleLogger.Fatalf) or
// panicking while it rotates its write-ahead log. So the store watches the
// free space of its data directory's filesystem and, below a reserve
// (Config.MinFreeBytes), is "low": it refuses, with ErrDiskLow and before
// anything is written, the commits that add data:
//
//   - Commit and Apply of a batch that sets or merges a key (a client
//     write on a store used as the KV directly; a delete-only batch passes);
//   - PutPending (a replicated write, coordinated here or received as a
//     replica: wire.Prepare) and CommitUnpended (a write a coordinator
//     commits alone): new writes, refused whole, so none was acknowledged;
//   - ApplyVersioned (catch-up, repair, and wire.Replicate of older builds):
//     the copy is pulled again once space is back.
//
// Everything else passes, because it frees space or because refusing it
// would lose an acknowledged write or leave the replication protocol's state
// wrong:
//
//   - deletes and range deletes (Commit/Apply of a batch without a set),
//     DeleteShard (a handed-off shard dropped), DropPendingUpTo, PurgeShard
//     (expired tombstones), ResolveShard (a term begins: its epoch record,
//     8 bytes, and the drop of older pending writes);
//   - CommitWrite, CommitWriteNoSync and CommitPending: a write already held
//     pending here, or rolled forward by a resolution, made visible. W
//     replicas may hold it and a client may have been answered: refusing
//     would leave an acknowledged write invisible here. Each moves a pending
//     record into the shard (about the same bytes) or, for a roll-forward,
//     adds a write that was pending on other replicas: bounded by the writes
//     of one term left pending by a coordinator change;
//   - ApplyInternal: the node's own small bookkeeping records (the lease
//     grant marker, 8 bytes, rewritten about once a minute);
//   - ApplyVersionedInReserve: the catch-up of a shard this node must
//     coordinate although it is low (no replica with space can), so it
//     serves every acknowledged write; bounded by what the shard's
//     replicas stored since this node's last catch-up.
//
// What passes is small: the reserve exists mainly for Pebble's own work,
// which needs free space to free space: flushing memtables (16 MiB each, up
// to 4 of them) and compactions, which write their output before they
// delete their inputs.
//
// Free space is read (statfs: Bavail*Bsize, what an unprivileged writer
// may use) every Config.DiskCheckInterval by a goroutine the store owns
// (Open starts it, Close stops it), and again as soon as commits have
// written diskRecheckBytes since the last check, so that a burst between
// two polls cannot eat more than that of the reserve. The goroutine owns the
// state changes (low, and the log lines); commits read low with one atomic
// load. Hysteresis: the store leaves "low" only once free space is above the
// reserve plus a quarter of it, so it does not flap around the threshold.

// ErrDiskLow is returned (wrapped, with the free space and the reserve) by
// a commit that adds data while the store's disk is below its reserve
// (Config.MinFreeBytes). Nothing of the commit was written. Match it with
// errors.Is.
var ErrDiskLow = errors.New("store: disk space low, writes refused")

// DefaultDiskCheckInterval is Config.DiskCheckInterval's zero value.
const DefaultDiskCheckInterval = time.Second

// diskRecheckBytes is how much the commits may write between two checks of
// free space beyond the poll: one memtable (memTableSize). At a full
// disk's worst burst (writes only limited by fsyncs, about 100 MB/s here)
// that is a check every 160 ms rather than every second, and it bounds what
// a burst takes of the reserve between checks to 16 MiB (1.6% of the 1 GiB
// default), not a second's worth of writes. It costs a commit an atomic add
// and a compare.
const diskRecheckBytes = memTableSize

// Default reserve (DefaultMinFree): 1% of the filesystem's size, at least
// 64 MiB and at most 1 GiB (CockroachDB's ballast rule: 1 GiB or 1%).
const (
	minFreeFloor   = 64 << 20
	minFreeCeiling = 1 << 30
)

// DefaultMinFree returns the default reserve for a filesystem of size
// bytes: 1% of it, at least 64 MiB and at most 1 GiB. A large data disk
// keeps 1 GiB free (room for Pebble's compactions and flushes, and for an
// operator to act); a small one (a laptop's, a test machine's) only 1%, so
// `make run` and the tests are not refused writes because the disk is
// small.
func DefaultMinFree(size uint64) uint64 {
	return min(max(size/100, minFreeFloor), minFreeCeiling)
}

// DiskSpace returns the free space (for an unprivileged writer) and the
// size of the filesystem holding dir.
func DiskSpace(dir string) (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("store: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil //nolint:gosec // Bsize is positive
}

// DiskState is the guard's view of the store's disk.
type DiskState struct {
	// Free is the free space of the data directory's filesystem at the last
	// check, in bytes.
	Free uint64
	// Reserve is Config.MinFreeBytes (0: no guard).
	Reserve uint64
	// Low reports whether commits that add data are refused.
	Low bool
}

// diskGuard is the state of the free-space guard. free and low are written
// by the guard's goroutine only (or by Open before it starts); commits
// read them.
type diskGuard struct {
	dir      string
	reserve  uint64 // 0: no guard
	interval time.Duration
	statfs   func(dir string) (free uint64, err error)
	log      *slog.Logger

	free    atomic.Uint64
	low     atomic.Bool
	written atomic.Uint64 // bytes committed since the store opened
	refused prometheus.Counter

	// kick wakes the goroutine for a check (one slot: a full one means a
	// check is due already).
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// openDiskGuard checks free space once and starts the guard's goroutine
// (nothing without a reserve).
func (s *Store) openDiskGuard(cfg Config) error {
	g := &s.disk
	g.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_store_disk_refused_writes_total",
		Help: "Commits refused because the store's disk was below its reserve (imnode_store_disk_low)."})
	if cfg.MinFreeBytes <= 0 {
		return register(cfg.Registerer, []prometheus.Collector{g.refused})
	}
	g.dir, g.reserve, g.interval, g.log = cfg.Dir, uint64(cfg.MinFreeBytes), cfg.DiskCheckInterval, cfg.Logger
	if g.interval <= 0 {
		g.interval = DefaultDiskCheckInterval
	}
	g.statfs = cfg.StatFS
	if g.statfs == nil {
		g.statfs = func(dir string) (uint64, error) {
			free, _, err := DiskSpace(dir)
			return free, err
		}
	}
	free, err := g.statfs(g.dir)
	if err != nil {
		return err
	}
	g.update(free)
	cs := []prometheus.Collector{g.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_disk_free_bytes",
			Help: "Free space of the data directory's filesystem at the store's last check."},
			func() float64 { return float64(g.free.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_disk_reserve_bytes",
			Help: "Free space below which the store refuses writes that add data (--store-min-free-mib)."},
			func() float64 { return float64(g.reserve) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_disk_low",
			Help: "1 while the store's disk is below its reserve: writes that add data are refused, the node coordinates no writes."},
			func() float64 {
				if g.low.Load() {
					return 1
				}
				return 0
			}),
	}
	if err := register(cfg.Registerer, cs); err != nil {
		return err
	}
	g.kick, g.stop, g.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go g.run()
	return nil
}

// run checks free space every interval, and when kicked, until stopped.
func (g *diskGuard) run() {
	defer close(g.done)
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		case <-g.kick:
		}
		free, err := g.statfs(g.dir)
		if err != nil {
			// Keep the last state: a failing statfs says nothing of the
			// space (the next commit's write would tell).
			g.log.Warn("Checking the data disk's free space failed", "err", err)
			continue
		}
		g.update(free)
	}
}

// update records a check's free space and turns the guard low below the
// reserve, or back once above the reserve plus the margin.
func (g *diskGuard) update(free uint64) {
	g.free.Store(free)
	switch {
	case !g.low.Load() && free < g.reserve:
		g.low.Store(true)
		g.log.Warn("Data disk nearly full: refusing writes that add data until space is freed",
			"freeMiB", free>>20, "reserveMiB", g.reserve>>20, "resumeAboveMiB", g.resumeAbove()>>20)
	case g.low.Load() && free >= g.resumeAbove():
		g.low.Store(false)
		g.log.Info("Data disk has space again: taking writes", "freeMiB", free>>20, "reserveMiB", g.reserve>>20)
	}
}

// resumeAbove is the free space above which a low guard takes writes
// again: the reserve plus a quarter of it (hysteresis).
func (g *diskGuard) resumeAbove() uint64 { return g.reserve + g.reserve/4 }

// noteWritten counts n bytes committed and wakes the goroutine for a check
// each time the count crosses a multiple of diskRecheckBytes.
func (g *diskGuard) noteWritten(n int) {
	if g.kick == nil {
		return
	}
	after := g.written.Add(uint64(n)) //nolint:gosec // a batch's length is not negative
	if after/diskRecheckBytes != (after-uint64(n))/diskRecheckBytes {
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
}

// close stops the goroutine.
func (g *diskGuard) close() {
	if g.stop != nil {
		close(g.stop)
		<-g.done
		g.stop = nil
	}
}

// refuse returns the ErrDiskLow of a refused commit while the guard is low,
// nil otherwise.
func (g *diskGuard) refuse() error {
	if !g.low.Load() {
		return nil
	}
	g.refused.Inc()
	return fmt.Errorf("%w: %d MiB free, reserve %d MiB (writes resume above %d MiB)",
		ErrDiskLow, g.free.Load()>>20, g.reserve>>20, g.resumeAbove()>>20)
}

// refuseAdds is refuse for ops that set or merge a key; ops that only
// delete pass.
func (g *diskGuard) refuseAdds(ops []Op) error {
	if !g.low.Load() {
		return nil
	}
	for _, op := range ops {
		if op.Kind == OpSet || op.Kind == OpMergeFields {
			return g.refuse()
		}
	}
	return nil
}

// RefuseWrite returns the error a commit that adds data gets now: nil, or
// ErrDiskLow (counted in imnode_store_disk_refused_writes_total). For a
// caller that refuses a write before it reaches the store (a coordinator
// refuses to coordinate it at all).
func (s *Store) RefuseWrite() error { return s.disk.refuse() }

// DiskLow reports whether the store refuses writes that add data now (its
// disk is below the reserve). One atomic load: safe on every write path.
func (s *Store) DiskLow() bool { return s.disk.low.Load() }

// Disk returns the guard's view of the store's disk.
func (s *Store) Disk() DiskState {
	return DiskState{Free: s.disk.free.Load(), Reserve: s.disk.reserve, Low: s.disk.low.Load()}
}
