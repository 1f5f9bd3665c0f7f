package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Quorum writes: a write is visible only once W replicas hold it.
//
// The coordinator stores a write pending (durable, invisible to reads,
// digests and syncs: store.PutPending) on itself, unless a later term began
// in its store (the check a replica's Prepare makes: inTermHere), and sends
// it to the other replicas (wire.Prepare), which store it pending too.
// Once W replicas
// (itself included) hold it, and only if it still holds the lease under the
// same term, the coordinator makes it visible in its own store
// (store.CommitWrite) and answers; then it tells the replicas that hold it
// (a commit notice, carried by the next wire.Prepare to that replica or
// sent on its own as wire.CommitNotice: sendCommit), which make their
// copies visible. A lost
// notice is safe: the write is visible on the coordinator, pending on the
// others, and the next holder's resolution (below) or anti-entropy from the
// coordinator makes it visible everywhere; pending records left behind are
// dropped by the next resolution.
//
// A write whose quorum the coordinator meets alone (W = 1) skips the
// pending phase, which would decide nothing: commitAlone makes it visible
// here in one synced batch under the same lease and term checks, and the
// other replicas get it as above.
//
// Terms. Each lease holder writes under a term (epoch) of the shard. A node
// that takes a lease over (another node held it last, a granter does not
// know, this node does not know its term, or a write of its own failed)
// resolves the shard before it serves it: it asks every live replica for
// its recorded epoch and its pending writes (wire.PendingScan; the
// granters must answer), takes E, the highest epoch any answer names, and
//
//   - rolls forward every pending write of term E (the term of the last
//     holder that served writes: any later term would have been recorded on
//     W replicas, which include a granter): it makes it visible on W
//     replicas at its original versions (wire.CommitWrite), since it may
//     have been acknowledged; except, when this node held term E itself,
//     the writes it knows failed (it answered them with an error, and no
//     other node resolved the shard since), which it drops;
//   - starts term E+1 on W replicas (wire.Resolve): each drops its pending
//     writes of earlier terms and from then on refuses writes of earlier
//     terms (wire.Prepare). A pending write of an earlier term was either
//     acknowledged (then an earlier resolution made it visible on W
//     replicas, which the catch-up copies) or never was; either way it is
//     never made visible again.
//
// The rule that makes a resend stored once whichever coordinator takes it:
// no node serves a shard's next read or write while one of its writes may
// still become visible without having been settled. A write whose caller
// gives up while it is in flight (a deadline) is settled by its
// coordinator in the background (within the request timeout: committed if
// W replicas hold it), and the shard waits for it. A write that failed (its
// quorum failed, the lease or term changed before it committed) makes its
// coordinator step down (release the shard's lease) and owe a resolution;
// no node serves the shard again before a resolution settled that write,
// either visible (the resend's de-duplication finds it) or dropped forever
// (the resend is stored as new). The client gets the retryable 4200 only
// when the outcome was unknown when it was answered.

// writeEpoch returns the term this node writes shard under: it holds the
// lease and has resolved the shard since it took it.
func (rs *Set) writeEpoch(shard uint16) (uint64, bool) {
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	st := &rs.lease.s[shard]
	if !rs.now().Before(st.until) || st.epoch == 0 || st.resolveOwed {
		return 0, false
	}
	return st.epoch, true
}

// maxFailed bounds the failed writes a node remembers per shard until its
// next resolution; beyond it, the resolution rolls them forward instead of
// dropping them (still stored once: see the top of this file).
const maxFailed = 1024

// stepDown gives up shard's lease after write (epoch, id) failed: the next
// holder (this node included) resolves the shard first. This node never
// acknowledged the write, so its own resolution drops it.
func (rs *Set) stepDown(shard uint16, epoch, id uint64) {
	rs.lease.mu.Lock()
	st := &rs.lease.s[shard]
	already := st.resolveOwed && !rs.now().Before(st.until)
	st.resolveOwed = true
	st.until = time.Time{}
	if len(st.failed) < maxFailed {
		st.failed = append(st.failed, [2]uint64{epoch, id})
	}
	rs.lease.mu.Unlock()
	if !already {
		rs.met.stepDowns.Inc()
		rs.releaseLeases([]uint16{shard})
	}
}

// maxWritePayload is the largest encoded write a coordinator replicates.
func (rs *Set) maxWritePayload() int { return rs.cfg.MaxWritePayload }

// writeState collects the replicas that hold a write pending, so the
// commit notice reaches those that answer after the decision too.
type writeState struct {
	mu        sync.Mutex
	decided   bool
	committed bool
	held      []string
}

// coordinateWrite versions ops (a set becomes a versioned value, a delete
// a tombstone, a field update a VersionDoc record), stores them pending
// here and on the shard's other replicas and, once W replicas hold them,
// makes them visible here and returns. Nothing is stored when the encoded
// write exceeds the transport's frame limit (ErrTooLarge).
//
// With noSync (store.Batch.SetNoSync) neither this node nor the replicas
// fsync the pending write: it is acknowledged once W replicas' write-ahead
// logs hold it. A crash of a replica may then lose it there, whole (a
// write-ahead log loses a suffix, so never a synced write made after it),
// and a write lost on every replica is lost; the caller chose that (state
// a lost write leaves merely older). A resolution rolls it forward like
// any other write if a replica still holds it.
func (rs *Set) coordinateWrite(ctx context.Context, shard uint16, ops []store.Op, noSync bool) error {
	epoch, ok := rs.writeEpoch(shard)
	if !ok {
		return ErrNotReady
	}
	id := rs.clk.Now()
	vops, err := rs.versionOps(shard, ops)
	if err != nil {
		return err
	}
	w := store.PendingWrite{Epoch: epoch, ID: id, Ops: vops, NoSync: noSync}
	if size := writeSize(shard, w); size > rs.maxWritePayload() {
		return fmt.Errorf("%w: %d bytes, limit %d", wire.ErrTooLarge, size, rs.maxWritePayload())
	}
	replicas := rs.peers.Ring().Replicas(int(shard))
	need := rs.quorum(len(replicas))
	if rs.st.DiskLow() || rs.disk.low.Load() != nil {
		if err := rs.checkDiskQuorum(shard, replicas, need); err != nil {
			return err // nothing stored anywhere
		}
	}
	// The write is encoded only when it goes to another replica.
	var body, payload []byte
	if slices.ContainsFunc(replicas, func(id string) bool { return id != rs.cfg.NodeID }) {
		body = writeBody(shard, w)
		payload = withTail(body, noSync, nil)
	}
	ws := &writeState{}
	results := make(chan error, len(replicas))
	for _, to := range replicas {
		if to == rs.cfg.NodeID {
			continue
		}
		if rs.peerLow(to) {
			// It would refuse: a failed replica at once. The notices owed
			// to it wait for their flush.
			results <- wire.ErrDiskLow
			continue
		}
		// The commit notices owed to this replica ride along.
		pl, carried := payload, rs.takeNotices(to)
		if len(carried) > 0 {
			if pl = withTail(body, noSync, carried); len(pl) > rs.maxWritePayload() {
				rs.sendNotices(to, carried)
				pl, carried = payload, nil
			}
		}
		// The answer is handled on the transport's goroutine that reads
		// it (Peers.CallFunc): no goroutine per replica, and the reply
		// wakes only this write's caller, through results (buffered for
		// every replica, so the handler never blocks).
		rs.peers.CallFunc(to, wire.Prepare, pl, rs.requestTimeout(), func(_ []byte, err error) {
			err = wire.Decode(err)
			rs.peers.NoteCall(to, err)
			if errors.Is(err, wire.ErrDiskLow) {
				rs.markPeerLow(to, true)
			}
			if err != nil {
				rs.met.replicateErrors.Inc()
				rs.sendNotices(to, carried) // best effort; applying one twice is harmless
			} else if rs.noteHeld(ws, to) {
				rs.sendCommit(to, shard, epoch, id)
			}
			results <- err
		})
	}
	start := time.Now()
	if need <= 1 {
		return rs.commitAlone(shard, w, ws, start)
	}
	if err := rs.inTermHere(shard, epoch, func() error { return rs.st.PutPending(shard, w) }); err != nil {
		return rs.settle(shard, w, ws, inDoubt(err))
	}
	q := &quorumWait{results: results, stop: rs.ctx.Done(), acks: 1, left: len(replicas) - 1, need: need}
	if !q.wait(ctx) {
		// The caller gives up, but the write is still in flight: its
		// outcome is settled in the background, and the shard serves
		// nothing meanwhile (waitSettled), so a resend finds it committed
		// or refused for good.
		rs.beginDoubt(shard)
		rs.Go(func() {
			defer rs.endDoubt(shard)
			q.wait(context.Background())
			_ = rs.finishWrite(shard, w, ws, q, start)
		})
		return fmt.Errorf("%w: %w", ErrQuorum, transport.Retry(ctx.Err()))
	}
	return rs.finishWrite(shard, w, ws, q, start)
}

// quorumWait counts a write's answers from the other replicas.
type quorumWait struct {
	results          chan error
	stop             <-chan struct{} // the Set's shutdown
	acks, left, need int
	lastErr          error
}

// wait reads answers until need replicas hold the write or every replica
// answered; false if ctx ended first. The answers come within the request
// timeout of their calls. When the Set shuts down, the answers still
// awaited count as failed (the write fails, as its calls would).
func (q *quorumWait) wait(ctx context.Context) bool {
	for q.acks < q.need && q.left > 0 {
		select {
		case err := <-q.results:
			q.left--
			if err == nil {
				q.acks++
			} else {
				q.lastErr = err
			}
		case <-q.stop:
			q.left, q.lastErr = 0, transport.ErrShutdown
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// finishWrite makes a write W replicas hold visible here, if this node
// still holds the lease under the write's term; otherwise it steps down.
func (rs *Set) finishWrite(shard uint16, w store.PendingWrite, ws *writeState, q *quorumWait, start time.Time) error {
	rs.met.writeSeconds.Observe(time.Since(start).Seconds())
	if q.acks < q.need {
		rs.met.quorumFailures.Inc()
		return rs.settle(shard, w, ws, fmt.Errorf("%w: %d of %d acknowledged (%v)", ErrQuorum, q.acks, q.need, q.lastErr))
	}
	return rs.settle(shard, w, ws, rs.commitHere(shard, w, false))
}

// commitAlone makes visible a write whose quorum this node meets alone
// (W = 1): in one store batch, fsync'd unless the write is NoSync, with no
// pending record. A pending phase would decide nothing here, since no
// other replica's answer is waited for; the pending path would store the
// write, fsync it and commit it at once. The rules of that path still
// hold (commitHere), and the other replicas get the write as on the
// pending path (wire.Prepare, then a commit notice).
func (rs *Set) commitAlone(shard uint16, w store.PendingWrite, ws *writeState, start time.Time) error {
	err := inDoubt(rs.commitHere(shard, w, true))
	rs.met.writeSeconds.Observe(time.Since(start).Seconds())
	return rs.settle(shard, w, ws, err)
}

// commitHere makes w visible in this node's store if this node still holds
// the lease under w's term: the lease or the term may have changed while
// the write was in flight, and a new holder may have resolved the shard
// without it. The pending path (alone false) commits without a sync, since
// the pending record is synced (see store.CommitWriteNoSync). Alone, the
// write is committed in one batch (store.CommitUnpended) under the term
// check its pending copy would have had (inTermHere; the lease is checked
// first: Set.terms is never held with the lease's lock).
func (rs *Set) commitHere(shard uint16, w store.PendingWrite, alone bool) error {
	if cur, ok := rs.writeEpoch(shard); !ok || cur != w.Epoch {
		return fmt.Errorf("%w: the lease moved while the write was in flight", ErrQuorum)
	}
	if !alone {
		return rs.st.CommitWriteNoSync(shard, w)
	}
	return rs.inTermHere(shard, w.Epoch, func() error { return rs.st.CommitUnpended(shard, w) })
}

// inTermHere runs write, the coordinator's own store write of a write of
// term epoch, unless a later term began in this store (checkTerm, the check
// a replica's Prepare makes; then the retryable ErrQuorum), holding
// Set.terms shared so that no term begins here between the check and the
// write.
func (rs *Set) inTermHere(shard uint16, epoch uint64, write func() error) error {
	rs.terms.RLock()
	defer rs.terms.RUnlock()
	if err := rs.checkTerm(shard, epoch); err != nil {
		if errors.Is(err, errTermEnded) {
			err = fmt.Errorf("%w: %w", ErrQuorum, err)
		}
		return err
	}
	return write()
}

// inDoubt turns the store's refusal of a coordinator's own copy (its disk
// turned low after checkDiskQuorum) into ErrQuorum: the Prepares went out
// before, so other replicas may hold the write, and a resolution may still
// make it visible. The client must not be told it was refused for sure.
func inDoubt(err error) error {
	if errors.Is(err, store.ErrDiskLow) {
		return fmt.Errorf("%w: %w", ErrQuorum, err)
	}
	return err
}

// errTermEnded: a later term than the write's began in this store.
var errTermEnded = errors.New("cluster: the write's term ended")

// checkTerm returns errTermEnded (wrapped, with both terms) when a term
// later than epoch began for shard in this store. The caller holds
// Set.terms shared until it stored the write.
func (rs *Set) checkTerm(shard uint16, epoch uint64) error {
	cur, err := rs.st.ShardEpoch(shard)
	if err != nil {
		return err
	}
	if epoch < cur {
		return fmt.Errorf("%w (term %d, now %d)", errTermEnded, epoch, cur)
	}
	return nil
}

// settle records a write's outcome here: after err this node steps down
// (the write may be pending on other replicas, and its next resolution
// drops it); otherwise the replicas that hold it are sent its commit
// notice.
func (rs *Set) settle(shard uint16, w store.PendingWrite, ws *writeState, err error) error {
	if err != nil {
		rs.decide(ws, false)
		rs.stepDown(shard, w.Epoch, w.ID)
		return err
	}
	for _, to := range rs.decide(ws, true) {
		rs.sendCommit(to, shard, w.Epoch, w.ID)
	}
	return nil
}

// beginDoubt and endDoubt count a shard's writes whose caller gave up
// while they were in flight; waitSettled waits for none to be left.
func (rs *Set) beginDoubt(shard uint16) {
	rs.doubt.mu.Lock()
	defer rs.doubt.mu.Unlock()
	d := rs.doubt.shards[shard]
	if d == nil {
		d = &doubtState{settled: make(chan struct{})}
		rs.doubt.shards[shard] = d
	}
	d.n++
}

func (rs *Set) endDoubt(shard uint16) {
	rs.doubt.mu.Lock()
	defer rs.doubt.mu.Unlock()
	d := rs.doubt.shards[shard]
	if d.n--; d.n == 0 {
		close(d.settled)
		delete(rs.doubt.shards, shard)
	}
}

// waitSettled waits, up to the request timeout, until shard has no write in
// flight whose caller gave up; false if one is still in flight (the caller
// answers "not ready", retryable).
func (rs *Set) waitSettled(shard uint16) bool {
	rs.doubt.mu.Lock()
	d := rs.doubt.shards[shard]
	rs.doubt.mu.Unlock()
	if d == nil {
		return true
	}
	t := time.NewTimer(rs.requestTimeout())
	defer t.Stop()
	select {
	case <-d.settled:
		return true
	case <-t.C:
		return false
	case <-rs.ctx.Done():
		return false
	}
}

// doubts holds, per shard, the writes in flight whose caller gave up.
type doubts struct {
	mu     sync.Mutex
	shards map[uint16]*doubtState
}

type doubtState struct {
	n       int
	settled chan struct{} // closed when n drops to 0
}

// noteHeld records that replica to holds the write pending; true if the
// write is already committed (the caller sends the notice).
func (rs *Set) noteHeld(ws *writeState, to string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.decided {
		return ws.committed
	}
	ws.held = append(ws.held, to)
	return false
}

// decide records the write's outcome and returns the replicas that held
// it so far.
func (rs *Set) decide(ws *writeState, committed bool) []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.decided, ws.committed = true, committed
	return ws.held
}

// Commit notices this node owes other replicas wait in outNotices for the
// next write to the same replica (wire.Prepare), which carries them: the
// replica applies them in the batch that stores that write pending, so a
// notice under load costs neither a frame nor a commit of its own. A
// notice that no write picked up within Config.CommitNoticeDelay is sent on
// its own (wire.CommitNotice) by flushNotices; so is a replica's batch that
// reaches maxOutNotices. All of it is best effort (see the top of this
// file): notices lost at a shutdown or with a failed send leave writes
// pending there until the next resolution, which is safe.
const maxOutNotices = 512

// outNotices holds the commit notices owed, per replica.
type outNotices struct {
	mu    sync.Mutex
	peers map[string]owed
	kick  chan struct{} // capacity 1: wakes flushNotices
}

// owed is what one replica is owed: the notices, and since when the oldest
// waits.
type owed struct {
	ns    []notice
	since time.Time
}

// sendCommit queues the notice that a write replica to holds pending is
// committed.
func (rs *Set) sendCommit(to string, shard uint16, epoch, id uint64) {
	o := &rs.outNotices
	o.mu.Lock()
	ow := o.peers[to]
	first := len(ow.ns) == 0
	if first {
		ow.since = time.Now()
	}
	ow.ns = append(ow.ns, notice{shard: shard, epoch: epoch, id: id})
	full := len(ow.ns) >= maxOutNotices
	if full {
		delete(o.peers, to)
	} else {
		o.peers[to] = ow
	}
	o.mu.Unlock()
	if full {
		rs.sendNotices(to, ow.ns)
		return
	}
	if first {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
}

// takeNotices returns and forgets the notices owed to replica to.
func (rs *Set) takeNotices(to string) []notice {
	o := &rs.outNotices
	o.mu.Lock()
	defer o.mu.Unlock()
	ow := o.peers[to]
	delete(o.peers, to)
	return ow.ns
}

// flushNotices is the worker sending, until the Set stops, the notices no
// write carried within Config.CommitNoticeDelay of the oldest one owed to
// the same replica.
func (rs *Set) flushNotices() {
	for {
		select {
		case <-rs.ctx.Done():
			return
		case <-rs.outNotices.kick:
		}
		for wait := rs.cfg.CommitNoticeDelay; wait > 0; wait = rs.flushDue() {
			if !transport.Sleep(rs.ctx, wait) {
				return
			}
		}
	}
}

// flushDue sends the notices owed to each replica whose oldest one waited
// Config.CommitNoticeDelay, and returns how long until the next replica's
// are due (0: nothing is owed).
func (rs *Set) flushDue() time.Duration {
	delay := rs.cfg.CommitNoticeDelay
	o := &rs.outNotices
	var due map[string][]notice
	var next time.Duration
	o.mu.Lock()
	now := time.Now()
	for to, ow := range o.peers {
		if left := delay - now.Sub(ow.since); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		if due == nil {
			due = map[string][]notice{}
		}
		due[to] = ow.ns
		delete(o.peers, to)
	}
	o.mu.Unlock()
	for to, ns := range due {
		rs.sendNotices(to, ns)
	}
	return next
}

// sendNotices sends notices to replica to as wire.CommitNotice messages,
// one per run of the same shard and term.
func (rs *Set) sendNotices(to string, ns []notice) {
	for len(ns) > 0 {
		n := 1
		for n < len(ns) && ns[n].shard == ns[0].shard && ns[n].epoch == ns[0].epoch {
			n++
		}
		var e wire.Enc
		e.U64(uint64(ns[0].shard))
		e.U64(ns[0].epoch)
		e.U64(uint64(n))
		for _, nt := range ns[:n] {
			e.U64(nt.id)
		}
		if err := rs.peers.Send(to, wire.CommitNotice, e.B); err != nil {
			rs.met.noticesDropped.Add(float64(n))
		}
		ns = ns[n:]
	}
}

// versionOps turns a write's ops into versioned records. An op's own
// version (store.Op.Version: an outbox effect, versioned when its command
// ran) is kept, so last-writer-wins orders effects by command, not by when
// they reach this coordinator; the clock observes it, so the versions this
// node takes later stay above it (hlc.Keep: one far ahead of the clock is
// replaced). Other ops get a fresh version each.
func (rs *Set) versionOps(shard uint16, ops []store.Op) ([]store.Op, error) {
	vops := make([]store.Op, 0, len(ops))
	for _, op := range ops {
		version := op.Version
		switch {
		case op.Kind == store.OpDeleteRange:
		case version == 0:
			version = rs.clk.Now()
		default:
			version = rs.clk.Keep(version)
		}
		switch op.Kind {
		case store.OpSet:
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: store.EncodeVersioned(version, false, op.Value)})
		case store.OpDelete:
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: store.EncodeVersioned(version, true, nil)})
		case store.OpMergeFields:
			// Every field at the op's version; the merge operator
			// combines it with the doc on each replica, field by field.
			rec, err := store.DocRecord(version, op.Value)
			if err != nil {
				return nil, fmt.Errorf("cluster: field update of key %x: %w", op.Key, err)
			}
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: rec})
		case store.OpDeleteRange:
			if s, err := store.ShardOf(op.Value); err != nil || (s != shard && !bytes.Equal(op.Value, store.ShardEnd(shard))) {
				return nil, fmt.Errorf("cluster: delete range crosses shard %d", shard)
			}
			vops = append(vops, op)
		default:
			return nil, fmt.Errorf("cluster: unknown op kind %d", op.Kind)
		}
	}
	return vops, nil
}

// decodeWrite decodes a wire.Prepare or wire.CommitWrite payload: the
// write and the commit notices it carries.
func decodeWrite(d *wire.Dec) (uint16, store.PendingWrite, []store.PendingID, error) {
	shard := uint16(d.U64())
	w := store.PendingWrite{Epoch: d.U64(), ID: d.U64()}
	if d.Err != nil {
		return 0, w, nil, d.Done("write")
	}
	ops, err := decodeOps(d, shard)
	if err != nil {
		return 0, w, nil, err
	}
	var commits []store.PendingID
	if w.NoSync, commits, err = decodeWriteTail(d, nil); err != nil {
		return 0, w, nil, err
	}
	for _, op := range ops {
		if op.Kind != store.OpSet && op.Kind != store.OpDeleteRange {
			return 0, w, nil, fmt.Errorf("cluster: replicated op kind %d", op.Kind)
		}
	}
	w.Ops = ops
	return shard, w, commits, nil
}

// servePrepare stores a write pending, from the holder this node granted
// the lease to (or none), unless a later term began here. The commit
// notices it carries are applied in the same batch: each names a write its
// coordinator made visible, so making it visible here is right whatever
// term began since (and harmless twice).
func (rs *Set) servePrepare(from string, d *wire.Dec) error {
	shard, w, commits, err := rs.holderWrite(from, d)
	if err != nil {
		return err
	}
	for _, c := range commits {
		if int(c.Shard) >= rs.cfg.Shards {
			return fmt.Errorf("cluster: commit notice for shard %d out of range", c.Shard)
		}
	}
	rs.terms.RLock()
	defer rs.terms.RUnlock()
	if err := rs.checkTerm(shard, w.Epoch); err != nil {
		if errors.Is(err, errTermEnded) {
			rs.met.replicaRefused.Inc()
			err = wire.Wrap(errNotHolder, err)
		}
		return err
	}
	if err := rs.observeOps(w.Ops); err != nil {
		return err
	}
	if err := rs.st.PutPending(shard, w, commits...); err != nil {
		return refusedLow(err)
	}
	rs.met.replicated.Add(float64(len(w.Ops)))
	return nil
}

// serveCommitWrite makes a write visible here: a resolution rolls it
// forward.
func (rs *Set) serveCommitWrite(from string, d *wire.Dec) error {
	shard, w, _, err := rs.holderWrite(from, d)
	if err != nil {
		return err
	}
	if err := rs.observeOps(w.Ops); err != nil {
		return err
	}
	return rs.st.CommitWrite(shard, w)
}

// serveResolve begins a term here.
func (rs *Set) serveResolve(from string, d *wire.Dec) error {
	shard := uint16(d.U64())
	epoch := d.U64()
	if err := d.Done("resolve"); err != nil {
		return err
	}
	if err := rs.fromHolder(shard, from); err != nil {
		return err
	}
	return rs.beginTerm(shard, epoch)
}

// holderWrite decodes a write sent by node from, refused unless from may
// replicate to this node (fromHolder).
func (rs *Set) holderWrite(from string, d *wire.Dec) (uint16, store.PendingWrite, []store.PendingID, error) {
	shard, w, commits, err := decodeWrite(d)
	if err != nil {
		return 0, w, nil, err
	}
	return shard, w, commits, rs.fromHolder(shard, from)
}

// fromHolder checks that node from may replicate shard to this node: the
// shard exists and this node granted its lease to from or to nobody.
func (rs *Set) fromHolder(shard uint16, from string) error {
	if int(shard) >= rs.cfg.Shards {
		return fmt.Errorf("cluster: shard %d out of range", shard)
	}
	if !rs.acceptsReplicate(shard, from) {
		rs.met.replicaRefused.Inc()
		return errNotHolder
	}
	return nil
}

// beginTerm records term epoch of shard here (store.ResolveShard), ordered
// against Prepare's check of the term.
func (rs *Set) beginTerm(shard uint16, epoch uint64) error {
	rs.terms.Lock()
	defer rs.terms.Unlock()
	return rs.st.ResolveShard(shard, epoch)
}

// pendingPage bounds the bytes of pending writes one wire.PendingScan
// answer carries (each write fits a frame on its own: coordinateWrite
// checks it).
const pendingPage = 1 << 20

// servePendingScan answers this node's epoch of a shard and a page of its
// pending writes after a cursor.
func (rs *Set) servePendingScan(d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	afterEpoch, afterID := d.U64(), d.U64()
	if err := d.Done("pending scan"); err != nil {
		return nil, err
	}
	if int(shard) >= rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: shard %d out of range", shard)
	}
	epoch, ws, more, err := rs.localPending(shard, afterEpoch, afterID, min(pendingPage, rs.maxWritePayload()))
	if err != nil {
		return nil, err
	}
	var e wire.Enc
	e.U64(epoch)
	e.U64(uint64(len(ws)))
	for _, w := range ws {
		e.U64(w.Epoch)
		e.U64(w.ID)
		encodeOps(&e, w.Ops)
	}
	e.Bool(more)
	return e.B, nil
}

// localPending returns this node's epoch of shard and its pending writes
// after the cursor, up to about budget bytes (at least one write).
func (rs *Set) localPending(shard uint16, afterEpoch, afterID uint64, budget int) (uint64, []store.PendingWrite, bool, error) {
	epoch, err := rs.st.ShardEpoch(shard)
	if err != nil {
		return 0, nil, false, err
	}
	var out []store.PendingWrite
	size, more := 0, false
	err = rs.st.ScanPending(shard, afterEpoch, afterID, func(w store.PendingWrite, n int) (bool, error) {
		if len(out) > 0 && size+n > budget {
			more = true
			return false, nil
		}
		size += n
		out = append(out, w)
		return true, nil
	})
	return epoch, out, more, err
}

// fetchPending reads every pending write and the epoch of shard at node
// id (locally for this node).
func (rs *Set) fetchPending(ctx context.Context, shard uint16, id string) (uint64, []store.PendingWrite, error) {
	var all []store.PendingWrite
	var epoch, ae, ai uint64
	for {
		var (
			page []store.PendingWrite
			more bool
			err  error
		)
		if id == rs.cfg.NodeID {
			epoch, page, more, err = rs.localPending(shard, ae, ai, pendingPage)
		} else {
			epoch, page, more, err = rs.remotePending(ctx, shard, id, ae, ai)
		}
		if err != nil {
			return 0, nil, err
		}
		all = append(all, page...)
		if !more || len(page) == 0 {
			return epoch, all, nil
		}
		ae, ai = page[len(page)-1].Epoch, page[len(page)-1].ID
	}
}

func (rs *Set) remotePending(ctx context.Context, shard uint16, id string, ae, ai uint64) (uint64, []store.PendingWrite, bool, error) {
	var e wire.Enc
	e.U64(uint64(shard))
	e.U64(ae)
	e.U64(ai)
	cctx, cancel := context.WithTimeout(ctx, rs.requestTimeout())
	defer cancel()
	resp, err := rs.call(cctx, id, wire.PendingScan, e.B)
	rs.peers.NoteCall(id, err)
	if err != nil {
		return 0, nil, false, err
	}
	d := wire.Dec{B: resp}
	epoch := d.U64()
	n := d.Count()
	var out []store.PendingWrite
	for range n {
		w := store.PendingWrite{Epoch: d.U64(), ID: d.U64()}
		if d.Err != nil {
			break
		}
		ops, err := decodeOps(&d, shard)
		if err != nil {
			return 0, nil, false, err
		}
		w.Ops = ops
		out = append(out, w)
	}
	more := d.Bool()
	if err := d.Done("pending scan"); err != nil {
		return 0, nil, false, err
	}
	return epoch, out, more, nil
}

// resolveShard settles the writes the previous terms left in doubt and
// begins a new term for this node (see the top of this file). Every
// granter must answer; the other live replicas are asked too. It returns
// whether the new term began on W replicas.
func (rs *Set) resolveShard(shard uint16, granters []string) bool {
	ctx, cancel := context.WithTimeout(rs.ctx, 2*rs.requestTimeout())
	defer cancel()
	rs.lease.mu.Lock()
	failed := slices.Clone(rs.lease.s[shard].failed)
	rs.lease.mu.Unlock()
	replicas := rs.peers.Ring().Replicas(int(shard))
	need := rs.quorum(len(replicas))
	var maxEpoch uint64
	byID := map[[2]uint64]store.PendingWrite{}
	for _, id := range replicas {
		must := id == rs.cfg.NodeID || slices.Contains(granters, id)
		if !must && !rs.peers.Reachable(id) {
			continue // best effort: do not wait on a peer found cut off
		}
		epoch, ws, err := rs.fetchPending(ctx, shard, id)
		if err != nil {
			if must {
				rs.log.Warn("Resolving a shard's pending writes failed", "shard", shard, "at", id, "err", err)
				return false
			}
			continue
		}
		maxEpoch = max(maxEpoch, epoch)
		for _, w := range ws {
			maxEpoch = max(maxEpoch, w.Epoch)
			byID[[2]uint64{w.Epoch, w.ID}] = w
		}
	}
	for key, w := range byID {
		if w.Epoch != maxEpoch || slices.Contains(failed, key) {
			continue
		}
		if !rs.onReplicas(ctx, shard, need, func() error { return rs.st.CommitWrite(shard, w) },
			wire.CommitWrite, writePayload(shard, w)) {
			rs.log.Warn("Rolling a pending write forward failed", "shard", shard, "epoch", w.Epoch, "id", w.ID)
			return false
		}
		rs.met.rolledForward.Inc()
	}
	next := maxEpoch + 1
	var e wire.Enc
	e.U64(uint64(shard))
	e.U64(next)
	if !rs.onReplicas(ctx, shard, need, func() error { return rs.beginTerm(shard, next) }, wire.Resolve, e.B) {
		rs.log.Warn("Beginning a shard's term failed", "shard", shard, "epoch", next)
		return false
	}
	rs.lease.mu.Lock()
	st := &rs.lease.s[shard]
	st.epoch, st.resolveOwed = next, false
	st.failed = slices.DeleteFunc(st.failed, func(k [2]uint64) bool { return slices.Contains(failed, k) })
	rs.lease.mu.Unlock()
	return true
}

// onReplicas runs local here and sends method with payload to the shard's
// other live replicas in parallel; true once need of them (this node
// included) succeeded.
func (rs *Set) onReplicas(ctx context.Context, shard uint16, need int, local func() error, method uint16, payload []byte) bool {
	others := rs.others(rs.peers.Ring().Replicas(int(shard)))
	results := make(chan error, len(others))
	for _, to := range others {
		if !rs.peers.Reachable(to) {
			results <- transport.ErrUnavailable
			continue
		}
		rs.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, rs.requestTimeout())
			defer cancel()
			_, err := rs.call(cctx, to, method, payload)
			rs.peers.NoteCall(to, err)
			results <- err
		})
	}
	acks := 0
	if err := local(); err != nil {
		rs.log.Warn("Applying a resolution locally failed", "shard", shard, "err", err)
	} else {
		acks++
	}
	for range others {
		if acks >= need {
			break
		}
		if err := <-results; err == nil {
			acks++
		}
	}
	return acks >= need
}

// writePayload encodes a write for wire.Prepare and wire.CommitWrite.
func writePayload(shard uint16, w store.PendingWrite) []byte {
	return withTail(writeBody(shard, w), w.NoSync, nil)
}

// writeSize is len(writePayload(shard, w)), counted without encoding it.
func writeSize(shard uint16, w store.PendingWrite) int {
	n := uvarintLen(uint64(shard)) + uvarintLen(w.Epoch) + uvarintLen(w.ID) + uvarintLen(uint64(len(w.Ops)))
	for _, op := range w.Ops {
		n += uvarintLen(uint64(op.Kind)) + uvarintLen(uint64(len(op.Key))) + len(op.Key) +
			uvarintLen(uint64(len(op.Value))) + len(op.Value)
	}
	if w.NoSync {
		n += uvarintLen(flagNoSync) // withTail's flags
	}
	return n
}

// uvarintLen is the length of v encoded by wire.Enc.U64.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// writeBody encodes a write up to its ops; withTail adds the rest.
func writeBody(shard uint16, w store.PendingWrite) []byte {
	var e wire.Enc
	e.U64(uint64(shard))
	e.U64(w.Epoch)
	e.U64(w.ID)
	encodeOps(&e, w.Ops)
	return e.B
}

// withTail returns body followed by the write's flags and the commit
// notices it carries (a copy of body when anything follows).
func withTail(body []byte, noSync bool, commits []notice) []byte {
	if !noSync && len(commits) == 0 {
		return body
	}
	e := wire.Enc{B: make([]byte, len(body), len(body)+8+len(commits)*16)}
	copy(e.B, body)
	encodeWriteTail(&e, noSync, commits, nil)
	return e.B
}

// Commit notices arrive as one-way messages; the transport's handler must
// not block, so they are applied by one worker from a bounded queue. A
// notice that finds the queue full is dropped (counted): the write stays
// pending here until the next resolution or anti-entropy, which is safe
// (see the top of this file).
const noticeQueue = 4096

type notice struct {
	shard     uint16
	epoch, id uint64
}

// HandleMessage serves the replica's one-way messages (wire.CommitNotice).
func (rs *Set) HandleMessage(from string, method uint16, payload []byte) error {
	if method != wire.CommitNotice {
		return fmt.Errorf("replica: unknown message %d", method)
	}
	d := wire.Dec{B: payload}
	shard := uint16(d.U64())
	epoch := d.U64()
	n := d.Count()
	ns := make([]notice, 0, n)
	for range n {
		ns = append(ns, notice{shard: shard, epoch: epoch, id: d.U64()})
	}
	if err := d.Done("commit notice"); err != nil {
		return err
	}
	if int(shard) >= rs.cfg.Shards {
		return fmt.Errorf("cluster: shard %d out of range", shard)
	}
	for _, nt := range ns {
		select {
		case rs.notices <- nt:
		default:
			rs.met.noticesDropped.Inc()
		}
	}
	return nil
}

// commitNotices is the worker applying queued commit notices until the Set
// stops.
func (rs *Set) commitNotices() {
	for {
		select {
		case <-rs.ctx.Done():
			return
		case nt := <-rs.notices:
			if _, err := rs.st.CommitPending(nt.shard, nt.epoch, nt.id); err != nil && !errors.Is(err, store.ErrClosed) {
				rs.log.Warn("Committing a pending write failed", "shard", nt.shard, "err", err)
			}
		}
	}
}
