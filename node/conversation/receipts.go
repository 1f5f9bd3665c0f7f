package conversation

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// maxAckScan bounds the messages one receiver ack looks at for receipts.
// The JS SDK acks at most one second of messages per conversation.
const maxAckScan = 1000

// ackQueueSize bounds the receiver acks waiting for the ack loop. When it is
// full, Handle processes the ack itself (the caller waits: back-pressure).
const ackQueueSize = 4096

// ackBatchMax is the most receiver acks one commit covers; larger batches
// would hold more client stripes at once for little gain.
const ackBatchMax = 128

// ackJob is one receiver ack waiting for the ack loop.
type ackJob struct {
	c  Caller
	am *pb.AckCommand
}

// handleReceiverAck implements the receiver delivery ack (spec 3.5.5): it
// advances the client's delivery pointer and sends delivery receipts for
// r=true messages. It never answers. While the engine runs, acks are handed
// to the ack loop, which commits a burst of them at once instead of keeping
// the session's worker waiting.
func (e *Engine) handleReceiverAck(ctx context.Context, c Caller, req *pb.GenericCommand) error {
	am := req.GetAckMessage()
	if am == nil {
		return nil
	}
	job := ackJob{c: c, am: am}
	if e.running.Load() {
		select {
		case e.acks <- job:
			return nil
		default:
		}
	}
	return e.processAcks(ctx, []ackJob{job})
}

// ackLoop is the single goroutine that commits queued receiver acks.
func (e *Engine) ackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-e.acks:
			batch := []ackJob{j}
		more:
			for len(batch) < ackBatchMax {
				select {
				case j := <-e.acks:
					batch = append(batch, j)
				default:
					break more
				}
			}
			if err := e.processAcks(context.Background(), batch); err != nil {
				e.log.Warn("Recording receiver acks failed", "err", err)
			}
		}
	}
}

// drainAckBudget bounds how long Stop spends on acks still queued: a
// delivery receipt is best effort, and at shutdown the peers holding the
// clients' state may be stopping too.
const drainAckBudget = 5 * time.Second

// drainAcks processes acks still queued after the ack loop stopped, in
// batches, for at most drainAckBudget; what is left is dropped and counted
// in the log.
func (e *Engine) drainAcks() {
	deadline := time.Now().Add(drainAckBudget)
	for time.Now().Before(deadline) {
		var batch []ackJob
	more:
		for len(batch) < ackBatchMax {
			select {
			case j := <-e.acks:
				batch = append(batch, j)
			default:
				break more
			}
		}
		if len(batch) == 0 {
			return
		}
		if err := e.processAcks(context.Background(), batch); err != nil {
			e.log.Warn("Recording receiver acks failed", "err", err)
		}
	}
	if n := len(e.acks); n > 0 {
		e.log.Warn("Dropping receiver acks at shutdown", "acks", n)
	}
}

// ackWork is one resolved receiver ack: the newest message it covers and
// those of them that asked for a delivery receipt.
type ackWork struct {
	c     Caller
	r     *convRecord
	top   int64
	rcpts []msgHead
}

// add records that the ack covers m.
func (w *ackWork) add(m msgHead) {
	w.top = max(w.top, m.Ts)
	if m.Receipt && m.From != w.c.ClientID {
		w.rcpts = append(w.rcpts, m)
	}
}

// msgHead is what receiver acks and reads need of a stored message: these
// fields of message (records.go), under the same JSON names, decoded
// without its content (decodeMessageHead; TestConversationMsgHeadDecode
// checks they agree).
type msgHead struct {
	ID       string   `json:"id"`
	From     string   `json:"f"`
	Ts       int64    `json:"t"`
	Receipt  bool     `json:"r,omitempty"`
	GroupRcp bool     `json:"gr,omitempty"`
	To       []string `json:"to,omitempty"`
}

// resolveAck finds the messages a receiver ack covers (nil if none).
func (e *Engine) resolveAck(j ackJob) (*ackWork, error) {
	c, am := j.c, j.am
	r, err := e.loadConvShared(c.App, am.GetCid()) // read only
	if err != nil || r == nil || r.expired(e.nowMs()) || r.Kind == convTransient || !r.isMember(c.ClientID) {
		return nil, err
	}
	w := &ackWork{c: c, r: r}
	switch {
	case am.Mid != nil:
		m, err := e.lookupMessage(c.App, r.ID, am.GetMid())
		if err != nil || m == nil {
			return nil, err
		}
		w.add(msgHead{ID: m.ID, From: m.From, Ts: m.Ts, Receipt: m.Receipt})
	case am.Tots != nil:
		from := am.GetFromts()
		if am.Fromts == nil || from > am.GetTots() {
			from = am.GetTots()
		}
		if e.plainRange(c.App, r.ID, from, am.GetTots()) {
			w.top = am.GetTots()
			break
		}
		if err := e.scanHeads(c.App, r.ID, c.ClientID, from, am.GetTots(), false, w.add); err != nil {
			return nil, err
		}
	}
	if w.top == 0 {
		return nil, nil
	}
	return w, nil
}

// plainRange reports whether an ack or a read of the messages of cid in
// [from, to] can skip reading them: this node coordinates cid's shard, none
// of them asked for a receipt or names its recipients, and to is not after
// the newest message (recentMsgs says when that is known). An ack then moves
// the delivery pointer to to itself rather than to the newest message at
// or before it: the same messages are at or before either, since none
// lies between them. (A client acking a range with no message in it moves
// its pointer to the range's end, where the scan would leave it alone; the
// SDKs ack the timestamps of messages they received.)
func (e *Engine) plainRange(app, cid string, from, to int64) bool {
	epoch := e.tsEpoch.Load()
	return e.shards.Coordinates(e.shards.ConvShard(app, cid)) && e.recent.plainRange(roomKey(app, cid), epoch, from, to)
}

// scanHeads calls fn for the messages of cid with a timestamp in [from, to]
// that clientID may see, oldest first or newest first, looking at most at
// maxAckScan messages.
func (e *Engine) scanHeads(app, cid, clientID string, from, to int64, newestFirst bool, fn func(msgHead)) error {
	lower, upper := logsWindow{newer: true, t: from, tIncluded: true, tt: to, ttIncluded: true}.
		bounds(e.convKey(app, cid, store.FamMsg))
	if string(lower) >= string(upper) {
		return nil
	}
	scanned := 0
	err := e.st.Scan(lower, upper, newestFirst, func(_, v []byte) (bool, error) {
		m, err := decodeMessageHead(v)
		if err != nil {
			return false, err
		}
		if len(m.To) == 0 || slices.Contains(m.To, clientID) {
			fn(m)
		}
		scanned++
		return scanned < maxAckScan, nil
	})
	if err != nil {
		return internal("scan messages", err)
	}
	return nil
}

// processAcks records a batch of receiver acks with one commit per client
// shard, none waiting for an fsync of its own (see recordAcksLocked), and
// then pushes the delivery receipts. It holds the client stripes of every
// acking client (taken in index order) from reading their state until the
// commit, so a concurrent read pointer update is never overwritten.
func (e *Engine) processAcks(_ context.Context, jobs []ackJob) error {
	var work []*ackWork
	for _, j := range jobs {
		w, err := e.resolveAck(j)
		if err != nil {
			return err
		}
		if w != nil {
			work = append(work, w)
		}
	}
	if len(work) == 0 {
		return nil
	}
	var idx []uint32
	for _, w := range work {
		idx = append(idx, stripeIndex(w.c.App, w.c.ClientID))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		e.clientStripes[i].Lock()
	}
	ps, err := e.recordAcksLocked(work)
	for _, i := range slices.Backward(idx) {
		e.clientStripes[i].Unlock()
	}
	if err != nil {
		return err
	}
	for _, p := range ps {
		e.deliverConv(p.app, p.cid, p.push)
	}
	return nil
}

type convPushItem struct {
	app, cid string
	push     push
}

// shardBatches builds one batch per client shard.
type shardBatches struct {
	e       *Engine
	order   []*store.Batch
	byShard map[uint16]*store.Batch
}

// of returns the batch of clientID's shard, where every key of the client
// (its state, its notifications) lives. Its writes wait for no fsync of
// their own.
func (sb *shardBatches) of(app, clientID string) *store.Batch {
	shard := sb.e.shards.ClientShard(app, clientID)
	b := sb.byShard[shard]
	if b == nil {
		b = sb.e.st.NewBatch()
		b.SetNoSync()
		sb.byShard[shard] = b
		sb.order = append(sb.order, b)
	}
	return b
}

// recordAcksLocked advances delivery pointers and persists receipts. The
// caller holds the client stripes of every acking client.
//
// The batches are committed without an fsync of their own
// (store.Batch.SetNoSync, on every replica): they are in the write-ahead
// logs when the commit returns, and the next synced commit on each store (a
// message, any durable write, or the store's own sync at most
// store.DefaultNoSyncFlushDelay later) makes them durable. A crash of the
// process or the machine before that loses them, whole per shard, never in
// part; what a client then sees is older, never wrong: the delivery pointer
// (maxAckTimestamp, ackAt in history) back at its last synced value, and a
// stored delivery receipt missing from the sender's notifications (its push
// went out already to a connected sender). Nothing else is in the batches,
// and a lost write never undoes a synced one: the log is replayed up to its
// first missing record, and every synced write lies before it. See
// "Receiver acks and reads" in docs/replication.md.
func (e *Engine) recordAcksLocked(work []*ackWork) ([]convPushItem, error) {
	now := e.nowMs()
	sb := &shardBatches{e: e, byShard: map[uint16]*store.Batch{}}
	type loaded struct {
		s       clientState
		epoch   uint64
		changed bool
	}
	states := map[[3]string]loaded{}
	var ps []convPushItem
	for _, w := range work {
		key := [3]string{w.c.App, w.c.ClientID, w.r.ID}
		l, ok := states[key]
		if !ok {
			var err error
			if l.s, l.epoch, err = e.loadStateLocked(w.c.App, w.c.ClientID, w.r.ID); err != nil {
				return nil, err
			}
		}
		if w.top > l.s.AckTs {
			l.s.AckTs, l.s.AckAt = w.top, now
			l.changed = true
		}
		states[key] = l
		for _, m := range w.rcpts {
			p := newPush(pb.CommandType_rcp, nil)
			p.RcpMessage = &pb.RcpCommand{Id: strp(m.ID), Cid: strp(w.r.ID), T: int64p(now), From: strp(w.c.ClientID)}
			e.reliable(sb.of(w.c.App, m.From), w.c.App, []string{m.From}, p)
			ps = append(ps, convPushItem{app: w.c.App, cid: w.r.ID, push: push{app: w.c.App, to: []string{m.From}, cmd: p}})
		}
	}
	for k, l := range states {
		if l.changed {
			e.putClientState(sb.of(k[0], k[1]), k[0], k[1], k[2], l.s)
		}
	}
	if err := e.commitShards(sb.order); err != nil {
		for k := range states {
			e.dropStateLocked(k[0], k[1], k[2])
		}
		return nil, internal("commit acks", err)
	}
	for k, l := range states {
		e.keepStateLocked(k[0], k[1], k[2], l.s, l.epoch)
	}
	return ps, nil
}

// ackCommitParallel bounds the shard commits of one batch of receiver acks
// in flight at once.
const ackCommitParallel = 16

// commitShards commits batches, each of one shard, up to ackCommitParallel
// of them concurrently. A batch of receiver acks writes the client shards
// of many clients (and the receipts of their senders), whose coordinators
// may be other nodes: each commit waits for its replicas' answers, and
// concurrent commits overlap them. Each shard's batch is atomic; across
// shards the acks were never atomic.
func (e *Engine) commitShards(batches []*store.Batch) error {
	if len(batches) == 1 {
		return e.st.Commit(batches[0])
	}
	errs := make([]error, len(batches))
	sem := make(chan struct{}, ackCommitParallel)
	var wg sync.WaitGroup
	for i, b := range batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = e.st.Commit(b)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// commitIfAny commits b durably unless it is empty, and releases it.
func (e *Engine) commitIfAny(b *store.Batch) error {
	if b.Empty() {
		b.Close()
		return nil
	}
	return e.st.Commit(b)
}

// deliverConv delivers pushes through the conversation's ordered queue
// without holding its write lock.
func (e *Engine) deliverConv(app, cid string, ps ...push) {
	if len(ps) == 0 {
		return
	}
	st := e.convStripe(app, cid)
	e.enqueue(st, ps...)
	e.drain(st)
}

// handleRead implements read (spec 3.12.2): it moves the read pointer, pushes
// the new unread state to the client's other sessions and sends read
// receipts (spec 3.12.3). It never answers. Like a receiver ack, a read is
// committed without an fsync of its own (recordAcksLocked says why that is
// safe): a crash may lose it, and the client's unread count and its
// senders' stored read receipts are then those of its last synced read.
func (e *Engine) handleRead(ctx context.Context, c Caller, req *pb.GenericCommand) error {
	rm := req.GetReadMessage()
	if rm == nil {
		return nil
	}
	tuples := rm.Convs
	for _, cid := range append(rm.Cids, rm.GetCid()) {
		if cid != "" {
			tuples = append(tuples, &pb.ReadTuple{Cid: strp(cid)})
		}
	}
	for _, t := range tuples {
		if err := e.readOne(ctx, c, t); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) readOne(_ context.Context, c Caller, t *pb.ReadTuple) error {
	r, err := e.loadConv(c.App, t.GetCid())
	if err != nil || r == nil || r.expired(e.nowMs()) || r.Kind == convTransient || !e.isReader(c.App, r, c.ClientID) {
		return err
	}
	last, err := e.newestMessage(c.App, r.ID)
	if err != nil {
		return err
	}
	target := last.ts()
	if t.GetTimestamp() > 0 {
		target = min(t.GetTimestamp(), target)
	}
	now := e.nowMs()
	b := e.st.NewBatch()
	b.SetNoSync()
	lock := e.clientLock(c.App, c.ClientID)
	lock.Lock()
	s, epoch, err := e.loadStateLocked(c.App, c.ClientID, r.ID)
	if err != nil {
		lock.Unlock()
		b.Close()
		return err
	}
	old := s.ReadTs
	if target > old {
		s.ReadTs, s.ReadAt = target, now
		if target > s.AckTs {
			s.AckTs, s.AckAt = target, now
		}
	}
	s.Changed = now
	e.putClientState(b, c.App, c.ClientID, r.ID, s)
	var ps []push
	if target > old {
		ps, err = e.readReceipts(b, c, r, old, target, t.GetMid())
	}
	if err == nil {
		err = e.st.Commit(b)
	} else {
		b.Close()
	}
	if err == nil {
		e.keepStateLocked(c.App, c.ClientID, r.ID, s, epoch)
	} else {
		e.dropStateLocked(c.App, c.ClientID, r.ID)
	}
	lock.Unlock()
	if err != nil {
		return internal("commit read", err)
	}
	tuple, err := e.unreadTuple(c.App, c.ClientID, r, s, last)
	if err != nil {
		return err
	}
	u := newPush(pb.CommandType_unread, nil)
	u.UnreadMessage = &pb.UnreadCommand{Convs: []*pb.UnreadTuple{tuple}, NotifTime: int64p(now)}
	ps = append(ps, push{app: c.App, to: []string{c.ClientID}, except: c.Session, cmd: u})
	e.deliverConv(c.App, r.ID, ps...)
	return nil
}

// readReceipts builds the read receipts for messages in (old, target]
// sent with r=true (the newest maxAckScan of them): in a two-member
// conversation to the other member, in a larger one only to senders whose
// session asked for group receipts (configBitmap bit 6). Each sender gets one
// receipt naming its newest such message (or the reader's mid in a
// two-member conversation).
func (e *Engine) readReceipts(b *store.Batch, c Caller, r *convRecord, old, target int64, mid string) ([]push, error) {
	if e.plainRange(c.App, r.ID, old+1, target) {
		return nil, nil // no message there asked for a receipt
	}
	var msgs []msgHead
	if err := e.scanHeads(c.App, r.ID, c.ClientID, old+1, target, true, func(m msgHead) { msgs = append(msgs, m) }); err != nil {
		return nil, err
	}
	slices.Reverse(msgs)
	pair := len(r.Members) == 2
	newest := map[string]msgHead{}
	var senders []string
	for _, m := range msgs {
		if m.From == c.ClientID || !m.Receipt || (!pair && !m.GroupRcp) {
			continue
		}
		if _, ok := newest[m.From]; !ok {
			senders = append(senders, m.From)
		}
		newest[m.From] = m
	}
	var ps []push
	for _, sender := range senders {
		id := newest[sender].ID
		if pair && mid != "" {
			id = mid
		}
		p := newPush(pb.CommandType_rcp, nil)
		p.RcpMessage = &pb.RcpCommand{Id: strp(id), Cid: strp(r.ID), T: int64p(target), Read: boolp(true), From: strp(c.ClientID)}
		e.reliable(b, c.App, []string{sender}, p)
		ps = append(ps, push{app: c.App, to: []string{sender}, cmd: p})
	}
	return ps, nil
}

// convMaxRead implements conv/max_read (spec 3.12.4).
func (e *Engine) convMaxRead(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	out := &pb.ConvCommand{Cid: strp(r.ID)}
	var maxAck, maxRead int64
	for _, id := range r.Members {
		if id == c.ClientID {
			continue
		}
		s, err := e.loadClientState(c.App, id, r.ID)
		if err != nil {
			return nil, err
		}
		var ack, read int64
		if s.ReadAt > 0 {
			read = s.ReadTs
		}
		if s.AckAt > 0 {
			ack = max(s.AckTs, read)
		}
		maxAck, maxRead = max(maxAck, ack), max(maxRead, read)
		if cm.GetQueryAllMembers() && (ack > 0 || read > 0) {
			t := &pb.MaxReadTuple{Pid: strp(id)}
			if ack > 0 {
				t.MaxAckTimestamp = int64p(ack)
			}
			if read > 0 {
				t.MaxReadTimestamp = int64p(read)
			}
			out.MaxReadTuples = append(out.MaxReadTuples, t)
		}
	}
	if maxAck > 0 {
		out.MaxAckTimestamp = int64p(maxAck)
	}
	if maxRead > 0 {
		out.MaxReadTimestamp = int64p(maxRead)
	}
	return convResponse(pb.OpType_max_read, out), nil
}
