package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/internal/run"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// Config configures a Set. Start from DefaultConfig or DefaultLocalConfig.
type Config struct {
	// NodeID is this node's stable id. Required.
	NodeID string
	// Store is the node's database. Required.
	Store *store.Store
	// Shards is S. Required (the cluster's shard count).
	Shards int
	// WriteQuorum is W: a write is acknowledged after min(W, replicas of
	// its shard) replicas hold it durably. Required.
	WriteQuorum int
	// LeaseDuration is how long a coordinator lease grant lasts. Zero
	// means 5s (DefaultConfig).
	LeaseDuration time.Duration
	// RequestTimeout bounds one request to a peer on the data path; the
	// retry budget of a KV operation is twice it. Zero means 5s.
	RequestTimeout time.Duration
	// AntiEntropyInterval is the period of digest comparisons between
	// replicas. Zero means 30s.
	AntiEntropyInterval time.Duration
	// SyncKeysPerSecond rate-limits repair and rebalancing streams. Zero
	// means 200000.
	SyncKeysPerSecond int
	// MaxWritePayload bounds the encoded size of one replicated write (a
	// shard's part of a batch, versioned): a larger write is refused with
	// wire.ErrTooLarge before anything is stored. Set it below the peer
	// transport's frame limit. Zero means 4 MiB less 1 KiB.
	MaxWritePayload int
	// CommitNoticeDelay is how long a commit notice waits for the next
	// write to the same replica, which carries it (quorum.go); after it,
	// the notice is sent on its own. Zero means 10ms.
	CommitNoticeDelay time.Duration
	// Now is the clock of leases and the hybrid logical clock. Zero means
	// time.Now (tests and clock-skew faults set another).
	Now func() time.Time
	// Logger is the parent logger. Zero means slog.Default().
	Logger *slog.Logger
	// Registerer receives the replica metrics. Zero means not registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the production timings.
func DefaultConfig() Config {
	return Config{
		LeaseDuration:       5 * time.Second,
		RequestTimeout:      5 * time.Second,
		AntiEntropyInterval: 30 * time.Second,
		SyncKeysPerSecond:   200000,
	}
}

// DefaultLocalConfig returns fast timings for tests and `make run` on one
// machine.
func DefaultLocalConfig() Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 2 * time.Second
	cfg.RequestTimeout = 2 * time.Second
	cfg.AntiEntropyInterval = 5 * time.Second
	return cfg
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.LeaseDuration == 0 {
		c.LeaseDuration = d.LeaseDuration
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if c.SyncKeysPerSecond == 0 {
		c.SyncKeysPerSecond = d.SyncKeysPerSecond
	}
	if c.MaxWritePayload == 0 {
		c.MaxWritePayload = 4<<20 - 1<<10
	}
	if c.CommitNoticeDelay == 0 {
		c.CommitNoticeDelay = 10 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("replica: NodeID is required")
	case c.Store == nil:
		return errors.New("replica: Store is required")
	case c.Shards < 1:
		return fmt.Errorf("replica: %d shards", c.Shards)
	case c.WriteQuorum < 1:
		return fmt.Errorf("replica: write quorum %d", c.WriteQuorum)
	case c.LeaseDuration < 100*time.Millisecond:
		return fmt.Errorf("replica: lease duration %v below 100ms", c.LeaseDuration)
	}
	return nil
}

// Peers is what the replicas need from the cluster: the placement, the
// liveness view and the peer transport. The cluster implements it.
type Peers interface {
	// Ring returns the current placement.
	Ring() *ring.Ring
	// Live reports gossip liveness (self is always live).
	Live(id string) bool
	// MemberActive reports whether id is live, not suspected and announced
	// active (a preferred coordinator that may take its shards back).
	MemberActive(id string) bool
	// Coordinators returns the live replicas of shard in preference order
	// (suspected ones last). The slice may be shared: do not modify it.
	Coordinators(shard uint16) []string
	// Suspected reports whether a recent call to id failed.
	Suspected(id string) bool
	// Reachable reports whether id is live and the last call to it did
	// not find it cut off.
	Reachable(id string) bool
	// NoteCall records the outcome of a call to peer.
	NoteCall(peer string, err error)
	// Call sends a request to a peer and waits for its answer.
	Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error)
	// CallFunc sends a request to a peer and returns at once; done runs
	// once with the answer or the error (ErrTimeout after timeout), on the
	// transport's goroutine that learns it, so it must not block
	// (transport.Transport.CallFunc).
	CallFunc(to string, method uint16, payload []byte, timeout time.Duration, done func([]byte, error))
	// Send queues a one-way message to a peer (best effort).
	Send(to string, method uint16, payload []byte) error
	// Draining reports whether this node is draining.
	Draining() bool
	// CaughtUp announces this node active once its first catch-up is done.
	CaughtUp() error
}

// Engine is what the replicas tell the conversation engine: timestamps
// cached for a shard may be stale once another node may have coordinated it.
type Engine interface {
	ForgetTimestamps()
}

// Set owns the shard replicas of one node: per shard its coordinator lease,
// the versions its writes get (one hybrid logical clock per node), quorum
// writes, catch-up and anti-entropy. Its state is guarded by the mutexes
// listed in node/LOCKING.md (leases.mu, leases.markerMu, syncer.mu, hlc.mu,
// Set.terms, writeState.mu, doubts.mu, diskPeers.mu, run.Group.mu); its goroutines (lease renewal, the sync
// worker, the commit-notice worker, catch-ups and replication calls) are
// started by Start and stopped by Shutdown.
type Set struct {
	cfg    Config
	log    *slog.Logger
	st     *store.Store
	met    *metrics
	peers  Peers
	engine Engine
	clk    hlc
	lease  leases
	sync   syncer

	// stopping is set by Quiesce: this node no longer coordinates.
	stopping atomic.Bool

	// terms orders wire.Prepare's check of a shard's term (shared)
	// against a resolution beginning a new term (exclusive).
	terms sync.RWMutex
	// notices queues commit notices for their worker (bounded; full:
	// dropped, see quorum.go).
	notices chan notice
	// outNotices holds the commit notices this node owes other replicas
	// until a write to them carries them or they are flushed.
	outNotices outNotices
	// doubt counts, per shard, writes in flight whose caller gave up.
	doubt doubts
	// disk knows which peers' disks are low (disklow.go).
	disk diskPeers

	ctx    context.Context //nolint:containedctx // lifetime context owned by the Set, cancelled by Shutdown
	cancel context.CancelFunc
	// run owns the Set's goroutines: open from New, closed by Shutdown.
	run run.Group
}

// New validates cfg and reads the lease grant marker. Nothing runs until
// Start.
func New(cfg Config, peers Peers) (*Set, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &Set{cfg: cfg, log: cfg.Logger.With("component", "replica"), st: cfg.Store, met: m, peers: peers,
		clk: hlc{now: cfg.Now}, ctx: ctx, cancel: cancel, notices: make(chan notice, noticeQueue),
		outNotices: outNotices{peers: map[string]owed{}, kick: make(chan struct{}, 1)}, doubt: doubts{shards: map[uint16]*doubtState{}}}
	rs.run.Open()
	rs.sync.init(rs)
	if err := rs.initLeases(); err != nil {
		cancel()
		return nil, err
	}
	return rs, nil
}

// SetEngine sets the engine told about coordinator changes. Call before
// Start.
func (rs *Set) SetEngine(e Engine) { rs.engine = e }

// CatchUpAlone catches every queued shard up when this node is alone (there
// is nobody to catch up from): call after the first OnRing, before Start.
func (rs *Set) CatchUpAlone() {
	for rs.sync.step() {
	}
	rs.sync.maybeActive()
}

// Start runs the sync worker and the lease loop.
func (rs *Set) Start() {
	rs.run.Go(rs.sync.run)
	rs.run.Go(rs.leaseLoop)
	rs.run.Go(rs.commitNotices)
	rs.run.Go(rs.flushNotices)
}

// Quiesce stops coordinating before a shutdown: requests for shards this
// node coordinates are answered "not ready" and its leases are released,
// so the next replicas need not wait them out.
func (rs *Set) Quiesce(started bool) {
	rs.stopping.Store(true)
	if !started {
		return
	}
	var held []uint16
	for s := range rs.cfg.Shards {
		if rs.holdsLease(uint16(s)) {
			held = append(held, uint16(s))
		}
	}
	rs.releaseLeases(held)
}

// Shutdown stops the goroutines and waits for them.
func (rs *Set) Shutdown() {
	rs.run.Close()
	rs.cancel()
	rs.run.Wait()
}

// OnRing takes a new placement: newly replicated shards are caught up,
// shards no longer replicated are released once handed off.
func (rs *Set) OnRing(old, cur *ring.Ring) { rs.sync.onRing(old, cur) }

// Ready reports whether shard has caught up here.
func (rs *Set) Ready(shard uint16) bool { return rs.sync.ready(shard) }

// Progress returns the source and the keys and bytes left of shard's
// catch-up (-1 when unknown).
func (rs *Set) Progress(shard uint16) (from string, keys, bytes int64) {
	return rs.sync.progress(shard)
}

// Rejoined restarts the first catch-up after a cancelled drain: the node
// announces active again once done.
func (rs *Set) Rejoined() {
	rs.sync.mu.Lock()
	rs.sync.initial = false
	rs.sync.mu.Unlock()
	rs.sync.signal()
}

// Go runs f on a goroutine the Set owns (waited for by Shutdown). Request
// paths (a write's replication calls, its settling in the background)
// start goroutines while the peer transport may still deliver requests
// during Shutdown; after Shutdown began, Go runs f on the caller's
// goroutine instead (the Set's context is cancelled by then, so its calls
// fail at once).
func (rs *Set) Go(f func()) { rs.run.Go(f) }

// RequestTimeout bounds one data-path request to a peer.
func (rs *Set) RequestTimeout() time.Duration { return rs.cfg.RequestTimeout }

// LeaseDuration is how long a lease grant lasts.
func (rs *Set) LeaseDuration() time.Duration { return rs.cfg.LeaseDuration }

func (rs *Set) call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	out, err := rs.peers.Call(ctx, to, method, payload)
	return out, wire.Decode(err)
}

func (rs *Set) now() time.Time { return rs.cfg.Now() }

// Coordinates implements conversation.Shards: this node coordinates shard
// now (it holds the shard's lease and is not stopping).
func (rs *Set) Coordinates(shard uint16) bool {
	return !rs.stopping.Load() && rs.holdsLease(shard) && !rs.standAside(shard)
}

// Coordinated returns the shards this node coordinates now.
func (rs *Set) Coordinated() []uint16 {
	var out []uint16
	for s := range rs.cfg.Shards {
		if rs.Coordinates(uint16(s)) {
			out = append(out, uint16(s))
		}
	}
	return out
}

// CanCoordinate reports whether this node may coordinate shard now: it is
// eligible and holds the shard's lease, acquiring it if needed (lease.go),
// and no write of the shard is in doubt (quorum.go; it waits for that up to
// the request timeout).
func (rs *Set) CanCoordinate(shard uint16) bool {
	return rs.eligible(shard) && rs.ensureLease(shard) && rs.waitSettled(shard)
}

func (rs *Set) canCoordinate(shard uint16) bool { return rs.CanCoordinate(shard) }

// eligible reports whether this node may coordinate shard: caught up, not
// stopping, and either holding the shard's lease or able to reach enough of
// the shard's other replicas to form a write quorum. An isolated node
// (partitioned, its peers hung) therefore does not seek the leases of its
// shards, and its held leases run out because it cannot renew them. A held
// lease is not given up because a call or probe to a peer timed out: under
// load that happens without any partition, and giving every lease up then
// answered commands "not coordinating" (4200) until the leases moved.
//
// A node whose disk is low leaves the shard to another replica when one can
// take it (standAside, disklow.go).
func (rs *Set) eligible(shard uint16) bool {
	return !rs.stopping.Load() && rs.sync.ready(shard) && (rs.holdsLease(shard) || rs.reachesQuorum(shard)) &&
		!rs.standAside(shard)
}

// reachesQuorum reports whether at least W-1 other replicas of shard are
// live and were not cut off by the last call to them.
func (rs *Set) reachesQuorum(shard uint16) bool {
	reps := rs.peers.Ring().Replicas(int(shard))
	need := rs.quorum(len(reps)) - 1
	if need <= 0 {
		return true
	}
	n := 0
	for _, id := range reps {
		if id != rs.cfg.NodeID && rs.peers.Reachable(id) {
			n++
		}
	}
	return n >= need
}

// quorum returns the write quorum for a replica list.
func (rs *Set) quorum(replicas int) int { return min(rs.cfg.WriteQuorum, max(replicas, 1)) }

// others returns ids without self.
func (rs *Set) others(ids []string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == rs.cfg.NodeID })
}

// every runs f every d on the calling goroutine until the Set stops.
func (rs *Set) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-rs.ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// Replicated returns the shards this node replicates in the current ring.
func (rs *Set) Replicated() []int { return rs.peers.Ring().ShardsOf(rs.cfg.NodeID) }

// ConfirmHandoff asks every replica of shard in ring rg but this node to
// confirm it holds the shard.
func (rs *Set) ConfirmHandoff(ctx context.Context, rg *ring.Ring, shard uint16) bool {
	for _, id := range rg.Replicas(int(shard)) {
		if id == rs.cfg.NodeID {
			continue
		}
		var e wire.Enc
		e.U64(uint64(shard))
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := rs.call(cctx, id, wire.EnsureSynced, e.B)
		cancel()
		if err != nil {
			return false
		}
	}
	return true
}
