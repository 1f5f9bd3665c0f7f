package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// AntiEntropySettle is how old a record must be to count in anti-entropy
// digests.
const AntiEntropySettle = 5 * time.Second

// syncPage bounds the records one sync answer carries.
const syncPage = 1000

// syncer catches up the shards this node replicates: all of them at start,
// newly placed ones after a roster change, and those whose digest differs
// from another replica's (anti-entropy). A shard is ready (may coordinate)
// once a sync from every live replica finished. One worker goroutine runs
// the syncs in order, rate-limited; the queue is a set, so it is bounded by
// the shard count.
type syncer struct {
	rs *Set

	mu      sync.Mutex
	isReady []bool
	queued  []bool
	queue   []uint16
	waiters map[uint16][]chan struct{}
	// prev is the ring before the latest change: its replicas are sync
	// sources too (a draining node hands off its shards this way).
	prev *ring.Ring
	// release lists shards this node no longer replicates: their copy is
	// deleted once every new replica confirmed it holds the shard.
	release []uint16
	// leftAt holds, per shard in release, this node's clock (an HLC
	// version) when it saw itself leave the shard's replicas: a copy placed
	// here again before it was deleted drops the pending writes it held
	// from before (dropStalePending).
	leftAt map[uint16]uint64
	// initial is set once the first catch-up of every replicated shard is
	// done.
	initial bool
	// transfers holds the progress of every queued shard's catch-up.
	transfers map[uint16]*transfer
	// cursors holds, per shard and source, the position in the source's
	// change log up to which this node holds what the source held
	// (catchup.go); at most one per replica of each shard.
	cursors map[uint16]map[string]store.ChangeCursor
	// aeHead is this node's change-log head at the start of the last
	// anti-entropy round (owned by the sync worker, which runs the rounds).
	aeHead store.ChangeCursor
	// cursorGen counts, per shard, the deletions of its copy here: a
	// catch-up that began before one records no cursor.
	cursorGen map[uint16]uint64
	// purgeNext is the position, among the shards this node replicates, of
	// the shard whose expired tombstones purgeTombstones deletes next, and
	// purgeAfter the key in it to go on after (nil: its start). Owned by
	// the sync worker.
	purgeNext  int
	purgeAfter []byte

	wake chan struct{}
}

func (s *syncer) init(rs *Set) {
	s.rs = rs
	s.isReady = make([]bool, rs.cfg.Shards)
	s.queued = make([]bool, rs.cfg.Shards)
	s.waiters = map[uint16][]chan struct{}{}
	s.transfers = map[uint16]*transfer{}
	s.cursors = map[uint16]map[string]store.ChangeCursor{}
	s.cursorGen = map[uint16]uint64{}
	s.leftAt = map[uint16]uint64{}
	s.wake = make(chan struct{}, 1)
}

// cursor returns this node's cursor in src's change log for shard, and
// the generation of shard's copy to hand back to setCursor.
func (s *syncer) cursor(shard uint16, src string) (c store.ChangeCursor, gen uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok = s.cursors[shard][src]
	return c, s.cursorGen[shard], ok
}

// setCursor records that this node holds what src held of shard at c,
// unless shard's copy here was deleted since generation gen.
func (s *syncer) setCursor(shard uint16, src string, c store.ChangeCursor, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cursorGen[shard] != gen {
		return
	}
	m := s.cursors[shard]
	if m == nil {
		m = map[string]store.ChangeCursor{}
		s.cursors[shard] = m
	}
	m[src] = c
}

// forgetCursors drops shard's cursors and makes the catch-ups in flight
// record none: its copy here is being deleted.
func (s *syncer) forgetCursors(shard uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cursors, shard)
	s.cursorGen[shard]++
}

// ready reports whether shard has caught up here.
func (s *syncer) ready(shard uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(shard) < len(s.isReady) && s.isReady[shard]
}

// onRing marks newly replicated shards not ready and queues their sync.
func (s *syncer) onRing(old, cur *ring.Ring) {
	self := s.rs.cfg.NodeID
	s.mu.Lock()
	s.prev = old
	if old != nil {
		for _, sh := range old.ShardsOf(self) {
			if !cur.IsReplica(sh, self) && !slices.Contains(s.release, uint16(sh)) {
				s.release = append(s.release, uint16(sh))
				s.leftAt[uint16(sh)] = s.rs.clk.Now()
			}
		}
	}
	stale := map[uint16]uint64{}
	for _, sh := range cur.ShardsOf(self) {
		if at, ok := s.leftAt[uint16(sh)]; ok {
			stale[uint16(sh)] = at
			delete(s.leftAt, uint16(sh))
		}
		if old != nil && old.IsReplica(sh, self) && s.isReady[sh] {
			continue
		}
		s.isReady[sh] = false
		s.enqueueLocked(uint16(sh))
	}
	s.rs.met.syncPending.Set(float64(s.pendingLocked(cur)))
	s.mu.Unlock()
	for sh, at := range stale {
		s.dropStalePending(sh, at)
	}
	s.signal()
}

// dropStalePending drops the pending writes a copy of shard placed on this
// node again (before it was deleted) held from before this node left the
// shard's replicas (ids up to at): a takeover of the new placement asks
// this node for its pending writes and would roll forward those whose term
// is the highest named, though the shard's terms may have started over on
// its new replicas. Writes of the new placement that reached this node
// before its ring did have later ids and stay. The recorded term stays:
// a term of the new placement that reached this node first may be in it,
// and dropping it could let a resolution miss that term (a stale higher
// term only makes the next holder begin above it).
func (s *syncer) dropStalePending(shard uint16, at uint64) {
	rs := s.rs
	rs.terms.Lock()
	defer rs.terms.Unlock()
	n, err := rs.st.DropPendingUpTo(shard, at)
	if err != nil {
		rs.log.Warn("Dropping the stale pending writes of a shard placed here again failed", "shard", shard, "err", err)
		return
	}
	if n > 0 {
		rs.log.Info("Dropped the pending writes a shard placed here again held from before", "shard", shard, "writes", n)
	}
}

func (s *syncer) enqueueLocked(shard uint16) {
	if !s.queued[shard] {
		s.queued[shard] = true
		s.queue = append(s.queue, shard)
	}
	if s.transfers[shard] == nil {
		s.transfers[shard] = &transfer{keys: -1, bytes: -1}
	}
}

func (s *syncer) pendingLocked(cur *ring.Ring) int {
	n := 0
	for _, sh := range cur.ShardsOf(s.rs.cfg.NodeID) {
		if !s.isReady[sh] {
			n++
		}
	}
	return n
}

func (s *syncer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the sync worker: it drains the sync queue, runs background tasks,
// and compares digests every AntiEntropyInterval.
func (s *syncer) run() {
	rs := s.rs
	ae := time.NewTicker(rs.cfg.AntiEntropyInterval)
	defer ae.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		for s.step() {
			if rs.ctx.Err() != nil {
				return
			}
		}
		s.maybeActive()
		s.releaseShards()
		select {
		case <-rs.ctx.Done():
			return
		case <-s.wake:
		case <-ae.C:
			s.antiEntropy()
			s.trimChanges()
			s.purgeTombstones()
		case <-retry.C:
		}
		if s.hasQueue() || s.hasRelease() {
			retry.Reset(time.Second)
		}
	}
}

func (s *syncer) hasQueue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0
}

// step syncs the first queued shard; false when the queue is empty or the
// sync failed (it stays queued for the retry timer).
func (s *syncer) step() bool {
	s.sizeQueued()
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.mu.Unlock()
		return false
	}
	shard := s.queue[0]
	prev := s.prev
	t := s.transfers[shard]
	s.mu.Unlock()
	rs := s.rs
	cur := rs.peers.Ring()
	if !cur.IsReplica(int(shard), rs.cfg.NodeID) {
		s.finish(shard, false)
		return true
	}
	sources := rs.syncSources(shard, prev, cur)
	if len(sources) > 0 && rs.st.DiskLow() {
		return false // it would store nothing: retried once the disk has space
	}
	ok := true
	for _, src := range sources {
		// Every record, whatever its version: the shard is caught up once
		// it holds what each source holds now.
		if _, err := rs.catchUpFrom(rs.ctx, shard, src, t); err != nil {
			rs.met.syncRuns.WithLabelValues("catchup", "error").Inc()
			rs.log.Warn("Catching up a shard failed", "shard", shard, "from", src, "err", err)
			ok = false
		}
	}
	if !ok && rs.ctx.Err() == nil {
		// Keep it queued, but at the back, and retry later.
		s.mu.Lock()
		if len(s.queue) > 0 && s.queue[0] == shard {
			s.queue = append(s.queue[1:], shard)
		}
		s.mu.Unlock()
		return false
	}
	rs.met.syncRuns.WithLabelValues("catchup", "ok").Inc()
	s.finish(shard, true)
	if rs.engine != nil {
		rs.engine.ForgetTimestamps() // this node may coordinate the shard from now on
	}
	return true
}

func (s *syncer) hasRelease() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.release) > 0
}

// releaseShards deletes the local copies of shards this node no longer
// replicates, each once all of its current replicas confirmed they hold it
// (a draining node keeps its copies: it leaves with them). A shard placed
// here again is kept; the sync queue re-pulls what it may lack.
func (s *syncer) releaseShards() {
	rs := s.rs
	if rs.peers.Draining() {
		return
	}
	s.mu.Lock()
	todo := slices.Clone(s.release)
	s.mu.Unlock()
	for _, shard := range todo {
		if rs.ctx.Err() != nil {
			return
		}
		cur := rs.peers.Ring()
		done := cur.IsReplica(int(shard), rs.cfg.NodeID)
		if !done && rs.ConfirmHandoff(rs.ctx, cur, shard) && !rs.peers.Ring().IsReplica(int(shard), rs.cfg.NodeID) {
			s.forgetCursors(shard)
			err := rs.st.DeleteShard(shard)
			s.forgetCursors(shard) // and a cursor a catch-up recorded meanwhile
			if err != nil {
				rs.log.Warn("Deleting a handed-off shard failed", "shard", shard, "err", err)
				continue
			}
			rs.met.syncRuns.WithLabelValues("release", "ok").Inc()
			rs.log.Info("Deleted the local copy of a shard its new replicas confirmed", "shard", shard)
			done = true
		}
		if done {
			s.mu.Lock()
			s.release = slices.DeleteFunc(s.release, func(x uint16) bool { return x == shard })
			if !cur.IsReplica(int(shard), rs.cfg.NodeID) {
				delete(s.leftAt, shard) // deleted: DeleteShard dropped them
			}
			s.mu.Unlock()
		}
	}
}

// resync marks shards this node replicates not ready and queues their
// catch-up (after this node was cut off from a replica that may have
// coordinated them meanwhile).
func (s *syncer) resync(shards []uint16) {
	rs := s.rs
	cur := rs.peers.Ring()
	n := 0
	s.mu.Lock()
	for _, sh := range shards {
		if int(sh) >= rs.cfg.Shards || !cur.IsReplica(int(sh), rs.cfg.NodeID) {
			continue
		}
		s.isReady[sh] = false
		s.enqueueLocked(sh)
		n++
	}
	rs.met.syncPending.Set(float64(s.pendingLocked(cur)))
	s.mu.Unlock()
	if n > 0 {
		if rs.engine != nil {
			rs.engine.ForgetTimestamps()
		}
		s.signal()
	}
}

// finish dequeues shard and, if ok, marks it ready and wakes waiters.
func (s *syncer) finish(shard uint16, ok bool) {
	s.mu.Lock()
	s.queue = slices.DeleteFunc(s.queue, func(x uint16) bool { return x == shard })
	s.queued[shard] = false
	delete(s.transfers, shard)
	s.remainingLocked()
	var ws []chan struct{}
	if ok {
		s.isReady[shard] = true
		ws = s.waiters[shard]
		delete(s.waiters, shard)
	}
	s.rs.met.syncPending.Set(float64(s.pendingLocked(s.rs.peers.Ring())))
	s.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
}

// maybeActive announces the node active once its first catch-up is done.
func (s *syncer) maybeActive() {
	rs := s.rs
	s.mu.Lock()
	done := !s.initial && len(s.queue) == 0
	if done {
		s.initial = true
	}
	s.mu.Unlock()
	if !done || rs.peers.Draining() {
		return
	}
	if err := rs.peers.CaughtUp(); err != nil {
		rs.log.Warn("Announcing active failed", "err", err)
		s.mu.Lock()
		s.initial = false
		s.mu.Unlock()
		return
	}
	rs.log.Info("Caught up: active", "shards", len(rs.Replicated()))
}

// syncSources returns the live nodes other than self that replicate shard
// in the current or the previous ring.
func (rs *Set) syncSources(shard uint16, prev, cur *ring.Ring) []string {
	var out []string
	add := func(rg *ring.Ring) {
		if rg == nil {
			return
		}
		for _, id := range rg.Replicas(int(shard)) {
			if id != rs.cfg.NodeID && rs.peers.Live(id) && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	add(cur)
	add(prev)
	return out
}

// Pull makes this node hold every record node src holds of shard.
func (rs *Set) Pull(ctx context.Context, shard uint16, src string) error {
	return rs.pull(ctx, shard, src)
}

// pull makes this node hold every record node src holds of shard (the LWW
// merge makes it safe while writes continue), rate-limited. It copies what
// src logged since this node's last catch-up from it, or else only the
// digest buckets that differ (catchUpFrom).
func (rs *Set) pull(ctx context.Context, shard uint16, src string) error {
	_, err := rs.catchUpFrom(ctx, shard, src, nil)
	return err
}

// trimChanges bounds this node's change log (store.ChangeLogMaxAge,
// store.ChangeLogMaxEntries); the sync worker calls it with anti-entropy.
func (s *syncer) trimChanges() {
	rs := s.rs
	if _, err := rs.st.TrimChanges(rs.now(), store.ChangeLogMaxAge, store.ChangeLogMaxEntries); err != nil {
		rs.log.Warn("Trimming the change log failed", "err", err)
	}
}

// purgeBatchesPerRound bounds the store.PurgeShard batches of one
// anti-entropy round: at most 32 x store.PurgeBatch tombstones a round
// (about 1,100 a second with the lan profile's 30-second rounds). Each
// batch holds the store's commits off for its point reads and commit.
const purgeBatchesPerRound = 32

// purgeTombstones deletes whole-record tombstones past their grace
// (store.PurgeShard) from the shards this node replicates, one shard after
// the other, going on where the previous round stopped. A round scans one
// shard, and goes on to the next only while it finds tombstones to delete
// (a backlog), up to purgeBatchesPerRound batches. Every replica purges its
// own store; digests leave such tombstones out, so replicas that purged at
// different times do not differ for anti-entropy.
func (s *syncer) purgeTombstones() {
	rs := s.rs
	shards := rs.peers.Ring().ShardsOf(rs.cfg.NodeID)
	if len(shards) == 0 {
		return
	}
	for range purgeBatchesPerRound {
		if rs.ctx.Err() != nil {
			return
		}
		shard := uint16(shards[s.purgeNext%len(shards)])
		n, next, err := rs.st.PurgeShard(shard, s.purgeAfter)
		if err != nil {
			rs.log.Warn("Purging expired tombstones failed", "shard", shard, "err", err)
		}
		s.purgeAfter = next
		if next != nil && err == nil {
			continue // a full batch: more of this shard
		}
		s.purgeNext++
		s.purgeAfter = nil
		if n == 0 || err != nil {
			return
		}
	}
}

// pullBuckets copies the records of shard in the digest buckets of mask
// from node src, rate-limited to SyncKeysPerSecond, and returns how many it
// copied. The LWW merge makes it safe while writes continue, and copying a
// subset is as safe as copying everything: records merge in any order. t,
// if not nil, is credited with each page.
func (rs *Set) pullBuckets(ctx context.Context, shard uint16, src string, mask uint64, t *transfer) (int64, error) {
	var after []byte
	var copied int64
	for {
		var e wire.Enc
		e.U64(uint64(shard))
		e.Bytes(after)
		e.U64(syncPage)
		e.U64(mask)
		resp, err := rs.syncCall(ctx, src, wire.SyncScan, e.B)
		if err != nil {
			return copied, err
		}
		ops, more, cursor, err := decodeSyncPage(resp, shard)
		if err != nil {
			return copied, err
		}
		if err := rs.applySyncPage(ctx, ops, t); err != nil {
			return copied, err
		}
		copied += int64(len(ops))
		if !more || len(cursor) == 0 {
			return copied, nil
		}
		if after != nil && bytes.Compare(cursor, after) <= 0 {
			return copied, fmt.Errorf("cluster: sync cursor of shard %d did not advance", shard)
		}
		after = cursor
	}
}

// decodeSyncPage decodes an wire.SyncScan answer: the records, whether more
// follow, and the key to continue after (the last key the source examined,
// or, from a source that does not send one, the last record's).
func decodeSyncPage(resp []byte, shard uint16) (ops []store.Op, more bool, cursor []byte, err error) {
	d := wire.Dec{B: resp}
	ops, err = decodeRecords(&d, shard)
	if err != nil {
		return nil, false, nil, err
	}
	more = d.Bool()
	if len(d.B) > 0 {
		cursor = d.Bytes()
	} else if len(ops) > 0 {
		cursor = ops[len(ops)-1].Key
	}
	if err := d.Done("sync scan"); err != nil {
		return nil, false, nil, err
	}
	if len(cursor) > 0 {
		if s, err := store.ShardOf(cursor); err != nil || s != shard {
			return nil, false, nil, fmt.Errorf("cluster: sync cursor outside shard %d", shard)
		}
	}
	return ops, more, cursor, nil
}

// syncCallTimeout bounds one request of a sync or a digest comparison.
const syncCallTimeout = 10 * time.Second

// syncCall sends one request of a sync or a digest comparison to peer.
func (rs *Set) syncCall(ctx context.Context, peer string, method uint16, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, syncCallTimeout)
	defer cancel()
	return rs.call(ctx, peer, method, payload)
}

// decodeRecords decodes a page's records (a count, then key and value
// pairs) as versioned sets, each of them inside shard.
func decodeRecords(d *wire.Dec, shard uint16) ([]store.Op, error) {
	n := d.Count()
	ops := make([]store.Op, 0, n)
	for range n {
		k, v := d.Bytes(), d.Bytes()
		if d.Err != nil {
			break
		}
		if s, err := store.ShardOf(k); err != nil || s != shard {
			return nil, fmt.Errorf("cluster: sync record outside shard %d", shard)
		}
		ops = append(ops, store.Op{Kind: store.OpSet, Key: k, Value: v})
	}
	return ops, nil
}

// pageLimit returns the records a page may carry when the caller asked for
// limit: at most syncPage.
func pageLimit(limit int) int {
	if limit <= 0 || limit > syncPage {
		return syncPage
	}
	return limit
}

// syncScanBudget bounds the records one sync answer examines when it sends
// only some buckets: 16 pages' worth, a few milliseconds of reading, so an
// answer stays short however few records match.
const syncScanBudget = 16 * syncPage

// serveSyncScan answers a page of raw records of a shard after a key,
// optionally only those of some digest buckets (a trailing mask; older
// callers send none and get every bucket). The answer ends with the last
// key examined, where the next page starts.
func (rs *Set) serveSyncScan(d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	after := d.Bytes()
	limit := int(d.U64())
	mask := store.AllBuckets
	if len(d.B) > 0 {
		mask = d.U64()
	}
	if err := d.Done("sync scan"); err != nil {
		return nil, err
	}
	if int(shard) >= rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: shard %d out of range", shard)
	}
	limit = pageLimit(limit)
	if len(after) == 0 {
		after = nil
	} else if s, err := store.ShardOf(after); err != nil || s != shard {
		return nil, fmt.Errorf("cluster: sync cursor outside shard %d", shard)
	}
	budget := 0
	if mask != store.AllBuckets {
		budget = syncScanBudget
	}
	var body wire.Enc
	n := 0
	last, end, err := rs.st.ScanBuckets(shard, after, mask, budget, func(k, v []byte) (bool, error) {
		body.Bytes(k)
		body.Bytes(v)
		n++
		return n < limit, nil
	})
	if err != nil {
		return nil, err
	}
	var e wire.Enc
	e.U64(uint64(n))
	e.B = append(e.B, body.B...)
	e.Bool(!end)
	e.Bytes(last)
	return e.B, nil
}

// ensure returns once this node holds shard (it replicates it and has
// caught up), queueing a sync if needed; a drain waits on this.
func (s *syncer) ensure(ctx context.Context, shard uint16) error {
	rs := s.rs
	if int(shard) >= rs.cfg.Shards {
		return fmt.Errorf("cluster: shard %d out of range", shard)
	}
	if !rs.peers.Ring().IsReplica(int(shard), rs.cfg.NodeID) {
		return ErrNotReady
	}
	s.mu.Lock()
	if s.isReady[shard] {
		s.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	s.waiters[shard] = append(s.waiters[shard], w)
	s.enqueueLocked(shard)
	s.mu.Unlock()
	s.signal()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return errors.Join(ErrNotReady, ctx.Err())
	}
}
