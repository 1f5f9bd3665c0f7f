package conversation

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// handleDirect implements direct (spec 3.5): validate, assign a strictly
// increasing timestamp and an id, persist durably, push, then answer ack.
func (e *Engine) handleDirect(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	dm := req.GetDirectMessage()
	if dm == nil {
		return nil, protocol.ErrInvalidMessagingTarget.WithDetail("missing directMessage")
	}
	if dm.GetWill() {
		return e.acceptWill(c, dm)
	}
	return e.directWithHooks(ctx, c, dm)
}

func ackResponse(cid, mid string, ts int64) *pb.GenericCommand {
	a := &ackAlloc{cmd: pb.CommandType_ack, svc: protocol.ServiceIM, uid: mid, cid: cid, t: ts}
	a.ack = pb.AckCommand{Uid: &a.uid, T: &a.t, Cid: &a.cid}
	a.g = pb.GenericCommand{Cmd: &a.cmd, Service: &a.svc, AckMessage: &a.ack}
	return &a.g
}

// ackAlloc is an ack response and every value its pointer fields point
// to, allocated at once (one allocation per send's answer instead of
// seven). Nothing may modify what the fields point to (replacing a field
// is fine), as for any command a handler returns.
type ackAlloc struct {
	g        pb.GenericCommand
	ack      pb.AckCommand
	cmd      pb.CommandType
	svc      int32
	uid, cid string
	t        int64
}

// checkSend validates a send to r (spec 3.5.2, in order). r may be nil.
func (e *Engine) checkSend(c Caller, cid string, r *convRecord, dm *pb.DirectCommand) error {
	if r == nil || r.expired(e.nowMs()) {
		if strings.HasPrefix(cid, tempPrefix) || r != nil {
			return protocol.ErrConversationNotFound.WithDetail("conversation %q not found", cid)
		}
		return protocol.ErrInvalidMessagingTarget.WithDetail("conversation %q not found", cid)
	}
	if r.Kind == convSystem {
		if size := len(dm.GetMsg()) + len(dm.BinaryMsg); size > protocol.MaxContentSize {
			return protocol.ErrFrameTooLong.WithDetail("content of %d bytes exceeds %d", size, protocol.MaxContentSize)
		}
		return errSysUpstream
	}
	if r.Kind != convTransient && !c.Server() && !r.isMember(c.ClientID) {
		if r.isBlocked(c.ClientID) {
			return protocol.ErrBlockedByConv
		}
		return protocol.ErrInvalidMessagingTarget.WithDetail("%q is not a member of %q", c.ClientID, cid)
	}
	if r.isSilenced(c.ClientID) {
		return protocol.ErrSilenced
	}
	if r.TempSilenced[c.ClientID] > e.nowMs() {
		return protocol.ErrConversationBlacklisted.WithDetail("%q is silenced in %q for now", c.ClientID, cid)
	}
	if r.isBlocked(c.ClientID) {
		return protocol.ErrBlockedByConv
	}
	return checkContentSize(len(dm.GetMsg())+len(dm.BinaryMsg)+len(dm.GetPushData()), dm.MentionPids)
}

// checkContentSize enforces the message limit (protocol.MaxContentSize)
// over everything a message carries to its readers: content and pushData
// (size) and the mentioned client ids, each counted with one byte of
// separator. Without the ids 3,500 mentions of a 5 KB message made history
// pages too large to send.
func checkContentSize(size int, mentions []string) error {
	for _, id := range mentions {
		size += len(id) + 1
	}
	if size > protocol.MaxContentSize {
		return protocol.ErrFrameTooLong.WithDetail("message of %d bytes (content, pushData and mentioned ids) exceeds %d",
			size, protocol.MaxContentSize)
	}
	return nil
}

// send stores (unless transient) and pushes one message. mid is a
// pre-assigned id (will messages) or empty.
//
// The stripe lock covers validation, timestamp assignment and queueing the
// push (so pushes leave in timestamp order), not the fsync: the message is
// committed after the lock is released and its push is held in the queue
// until the commit succeeded (persist before push), which lets Pebble group
// the commits of one busy conversation. The conversation record is not
// written: the last message is the newest key of the message range.
func (e *Engine) send(ctx context.Context, c Caller, dm *pb.DirectCommand, mid string) (*message, error) {
	cid := dm.GetCid()
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	m, p, dedupKey, err := e.prepareSendLocked(c, cid, st, dm, mid)
	if err != nil || m == nil || p == nil {
		st.mu.Unlock()
		return m, err
	}
	transient := dm.GetTransient()
	if transient {
		e.enqueue(st, *p)
		st.mu.Unlock()
		e.drainFor(st, len(p.to))
		e.metrics.messages.WithLabelValues("transient").Inc()
		return m, nil
	}
	g := &gate{}
	p.gate = g
	e.enqueue(st, *p)
	st.inflight++
	st.mu.Unlock()

	b := e.st.NewBatch()
	b.Grow(5) // message, id index (needsIDIndex), order index (2), dedup key
	e.putMessage(b, c.App, cid, m)
	if m.indexed {
		e.indexLastMessage(b, c.App, cid, m.prevStored, m.Ts)
	}
	if e.cfg.Push != nil && e.cfg.Push.PushEnabled(c.App) {
		if r, err := e.loadConvShared(c.App, cid); err == nil && r != nil {
			e.queuePush(b, c.App, r, m, dm.GetPushData(), p.to, r.isMutedBy)
		}
	}
	if dedupKey != nil {
		v := binary.BigEndian.AppendUint64(nil, uint64(m.Ts))
		v = binary.BigEndian.AppendUint64(v, uint64(e.nowMs()))
		b.SetOwned(dedupKey, append(v, m.ID...)) // dedupKey is not modified after its build
	}
	err = e.st.Commit(b)

	st.mu.Lock()
	st.inflight--
	delete(st.pendingDt, string(dedupKey))
	if st.inflight == 0 && len(st.lastTs) > maxLastTsPerStripe {
		st.lastTs = nil // nothing in flight: the store has every assigned timestamp
	}
	st.mu.Unlock()
	// The push is durable now; a large fan-out (a chat room) is delivered
	// behind the answer, which need not wait for every socket's write.
	e.setGate(st, g, err == nil)
	e.drainFor(st, len(p.to))
	if err != nil {
		return nil, internal("commit message", err)
	}
	e.metrics.messages.WithLabelValues("stored").Inc()
	return m, nil
}

// configGroupRcp is configBitmap bit 6: the client wants read receipts in
// conversations of more than two members.
const configGroupRcp = 64

// maxLastTsPerStripe bounds the per-stripe cache of last assigned
// timestamps; it is dropped (and rebuilt from the store) when larger.
const maxLastTsPerStripe = 1024

// prepareSendLocked validates a send, answers resends of a known dt (push
// nil), assigns the timestamp and builds the message and its push. Caller
// holds st.mu.
func (e *Engine) prepareSendLocked(c Caller, cid string, st *stripe, dm *pb.DirectCommand, mid string) (*message, *push, []byte, error) {
	r, err := e.loadConvShared(c.App, cid) // read only: r.Members is the push's recipients
	if err != nil {
		return nil, nil, nil, err
	}
	if err := e.checkSend(c, cid, r, dm); err != nil {
		return nil, nil, nil, err
	}
	transient := dm.GetTransient()
	var dedupKey []byte
	if !transient && dm.GetDt() != "" {
		dedupKey = e.convKey(c.App, cid, store.FamDedup).Str(c.ClientID).Str(dm.GetDt()).Bytes()
		if m, ok := st.pendingDt[string(dedupKey)]; ok {
			return m, nil, nil, nil // the same resend while the first is committing
		}
		if m, ok := e.dedupLookup(dedupKey); ok {
			return m, nil, nil, nil
		}
	}
	ts, prev, err := e.nextTsLocked(st, c.App, cid, !transient)
	if err != nil {
		return nil, nil, nil, err
	}
	if mid == "" {
		mid = newMessageID(ts)
	}
	m := &message{ID: mid, From: c.ClientID, Ts: ts, Data: dm.GetMsg(), Receipt: dm.GetR(),
		GroupRcp: c.ConfigBitmap&configGroupRcp != 0, MentionAll: dm.GetMentionAll(), MentionPids: dm.MentionPids,
		prevStored: prev, indexed: indexed(r)}
	if dm.BinaryMsg != nil {
		m.Bin, m.IsBin, m.Data = dm.BinaryMsg, true, ""
	} else {
		m.Type, m.HasType = lcType(m.Data)
	}
	if dedupKey != nil {
		if st.pendingDt == nil {
			st.pendingDt = map[string]*message{}
		}
		st.pendingDt[string(dedupKey)] = m
	}
	to := r.Members
	if r.Kind == convTransient {
		if to, err = e.roomList(c.App, cid); err != nil {
			return nil, nil, nil, err
		}
	}
	if dm.ToPeerIds != nil { // set by _messageReceived only (directWithHooks)
		to = setAdd(slices.Clone(dm.ToPeerIds), c.ClientID) // the sender's other devices
	}
	return m, &push{app: c.App, to: to, except: c.Session, cmd: directPush(r, m, dm, transient)}, dedupKey, nil
}

// dedupLookup returns the message recorded under a de-duplication key if it
// is younger than the window.
func (e *Engine) dedupLookup(key []byte) (*message, bool) {
	v, err := e.st.Get(key)
	if err != nil || len(v) < 16 {
		return nil, false
	}
	at := int64(binary.BigEndian.Uint64(v[8:16]))
	if e.nowMs()-at > e.cfg.DedupWindow.Milliseconds() {
		return nil, false
	}
	return &message{Ts: int64(binary.BigEndian.Uint64(v[:8])), ID: string(v[16:])}, true
}

func directPush(r *convRecord, m *message, dm *pb.DirectCommand, transient bool) *pb.GenericCommand {
	a := &directAlloc{cmd: pb.CommandType_direct, svc: protocol.ServiceIM, cid: r.ID, id: m.ID, from: m.From,
		msg: m.Data, ts: m.Ts, convType: int32(r.Kind), transient: transient, mentionAll: dm.GetMentionAll()}
	d := &a.direct
	*d = pb.DirectCommand{Cid: &a.cid, Id: &a.id, FromPeerId: &a.from, Timestamp: &a.ts,
		MentionPids: dm.MentionPids, ConvType: &a.convType}
	if m.IsBin {
		d.BinaryMsg = m.Bin
	} else {
		d.Msg = &a.msg
	}
	if transient {
		d.Transient = &a.transient
	}
	if dm.MentionAll != nil {
		d.MentionAll = &a.mentionAll
	}
	a.g = pb.GenericCommand{Cmd: &a.cmd, Service: &a.svc, DirectMessage: d}
	return &a.g
}

// directAlloc is a direct push and every value its pointer fields point
// to, allocated at once (one allocation per message instead of up to
// eleven). Nothing may modify what the fields point to, as for any push.
type directAlloc struct {
	g                     pb.GenericCommand
	direct                pb.DirectCommand
	cmd                   pb.CommandType
	svc, convType         int32
	cid, id, from, msg    string
	ts                    int64
	transient, mentionAll bool
}

// lcType extracts _lctype from JSON object content, once at send time.
func lcType(data string) (int64, bool) {
	if !strings.HasPrefix(strings.TrimSpace(data), "{") {
		return 0, false
	}
	var v struct {
		T *json.Number `json:"_lctype"`
	}
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&v) != nil || v.T == nil {
		return 0, false
	}
	n, err := v.T.Int64()
	return n, err == nil
}

// wills holds will messages (spec 3.5.3) per session until the session
// ends. Guarded by mu, a leaf lock. Not persisted: a node restart drops the
// sessions too.
type wills struct {
	mu sync.Mutex
	m  map[willKey][]willMsg
}

type willKey struct {
	app, clientID string
	session       SessionID
}

type willMsg struct {
	dm  *pb.DirectCommand
	mid string
}

func (w *wills) init() { w.m = map[willKey][]willMsg{} }

func (w *wills) add(k willKey, msg willMsg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[k] = append(w.m[k], msg)
}

func (w *wills) take(k willKey) []willMsg {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.m[k]
	delete(w.m, k)
	return out
}

// acceptWill validates a will message and holds it until the session drops.
func (e *Engine) acceptWill(c Caller, dm *pb.DirectCommand) (*pb.GenericCommand, error) {
	r, err := e.loadConv(c.App, dm.GetCid())
	if err != nil {
		return nil, err
	}
	if err := e.checkSend(c, dm.GetCid(), r, dm); err != nil {
		return nil, err
	}
	mid := newMessageID(e.nowMs()) // its timestamp is assigned at send: indexed then (needsIDIndex)
	held := proto.Clone(dm).(*pb.DirectCommand)
	held.Will = nil
	e.wills.add(willKey{c.App, c.ClientID, c.Session}, willMsg{dm: held, mid: mid})
	return ackResponse(dm.GetCid(), mid, e.nowMs()), nil
}

// SessionGone is called by the gateway after a session ended and was
// removed from its registry (so Deliverer.Online no longer counts it).
// clean=false (connection dropped without session/close) delivers the
// session's will messages (on an engine goroutine while the engine runs, so
// SessionGone does not wait for their commit); they are discarded otherwise.
// When the client has no other session it leaves every chat room. Safe for
// concurrent use; never blocks on I/O while the engine runs.
func (e *Engine) SessionGone(app, clientID string, s SessionID, clean bool) {
	e.clientOffline(app, clientID, clean)
	held := e.wills.take(willKey{app, clientID, s})
	if !clean && len(held) > 0 {
		e.goFunc(func() { e.sendWills(app, clientID, s, held) })
	}
	if len(e.d.Online(app, []string{clientID})) == 0 {
		e.leaveRooms(app, clientID)
	}
}

// WillForwarder sends a will message (dm with its pre-assigned id mid) for
// caller at the coordinator of its conversation.
type WillForwarder func(ctx context.Context, c Caller, dm *pb.DirectCommand, mid string) error

// SetWillForwarder sets how a will message is sent when the node holding it
// no longer coordinates its conversation (the lease moved after the will
// was accepted): the cluster's router. Without one such a will is dropped.
func (e *Engine) SetWillForwarder(f WillForwarder) { e.forwardWill.Store(&f) }

// SendWill stores and pushes a will message with its pre-assigned id mid,
// as the conversation's coordinator (ErrNotCoordinator when this node is
// not). The router calls it at the coordinator.
func (e *Engine) SendWill(ctx context.Context, c Caller, dm *pb.DirectCommand, mid string) error {
	_, err := e.send(ctx, c, dm, mid)
	return err
}

// sendWills delivers a dropped session's will messages as normal messages,
// at the current coordinator of each one's conversation.
func (e *Engine) sendWills(app, clientID string, s SessionID, held []willMsg) {
	c := Caller{App: app, ClientID: clientID, Session: s}
	for _, w := range held {
		_, err := e.send(context.Background(), c, w.dm, w.mid)
		if f := e.forwardWill.Load(); errors.Is(err, ErrNotCoordinator) && f != nil {
			err = (*f)(context.Background(), c, w.dm, w.mid)
		}
		var pe *protocol.Error
		if err != nil && !errors.As(err, &pe) {
			e.log.Warn("Dropping will message", "conv", w.dm.GetCid(), "err", err)
		}
	}
}
