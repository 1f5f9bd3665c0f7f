package conversation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// System conversations (LeanCloud's "service conversations", the JS SDK's
// ServiceConversation): a record with sys = true and no member list.
// Clients find, subscribe to (conv/add self), unsubscribe from (conv/remove
// self), read and send to them; the server side (REST with the master key,
// see node/httpapi/sysconv.go) creates, updates and deletes them, manages
// subscribers and sends.
//
// Storage, all in the conversation's shard except the client index:
//   - FamSub (cid, clientId) = subscription {at, mu}; the client's
//     FamClientConv/FamClientState entries are written as for a member, so
//     unread counts and read pointers work unchanged.
//   - Messages to all subscribers (broadcasts) are stored once in FamMsg.
//     Messages to chosen clients are stored once too, with message.To; only
//     those clients see them (history, unread, last message).
//   - Messages clients send to a system conversation are not stored nor
//     delivered to anyone: they are acknowledged and handed to the app's
//     system-conversation hook (Config.SysMessages).

// adminMark starts the client id of a SystemCaller: it selects the
// system-conversation API for a back-end caller. The gateway never accepts
// a client id with a control character, so no client can present one; and
// it counts only for a caller without a session.
const adminMark = "\x00"

// SystemCaller is the back end's caller (see BackendCaller) of an
// operation of the system-conversation API; from is the from_client of
// sends (may be empty).
func SystemCaller(app, from string) Caller {
	return BackendCaller(app, adminMark+from)
}

// admin returns the from_client of a SystemCaller.
func (c Caller) admin() (string, bool) {
	if !c.Server() {
		return "", false
	}
	return strings.CutPrefix(c.ClientID, adminMark)
}

// Server-side operations on system conversations, run with a SystemCaller:
//
//	conv/start {attr}              create (answer conv/started {cid, cdate})
//	conv/update {cid, attr}        set columns; a null value deletes one
//	conv/close {cid}               delete with its subscriptions
//	conv/add / conv/remove {cid, m}  subscribe / unsubscribe clients
//	conv/members {cid, limit, next}  subscribers after next (results:
//	                               [{"subscriber", "timestamp", "conv_id"}])
//	conv/count {cid}               subscriber count
//	conv/query {where, ...}        query (any conversation type)
//	direct {cid, msg|binaryMsg, toPeerIds?, transient?}  send to every
//	                               subscriber, or to up to 20 chosen clients
//
// The same ops on a conversation that is not a system one answer 4313.

// MaxSysRecipients caps toPeerIds of a send to chosen clients (LeanCloud's
// documented limit).
const MaxSysRecipients = 20

// MaxSubscriberPage caps one page of conv/members for a system conversation.
const MaxSubscriberPage = 50

// deliverBatch is how many recipients one broadcast push frame names.
const deliverBatch = 1000

// SysMessage is a message a client sent to a system conversation, handed to
// the app's system-conversation hook (LeanCloud's _SysMessage fields).
type SysMessage struct {
	App       string
	ID        string
	ConvID    string
	From      string
	Data      string // Base64 when Bin
	Bin       bool
	Timestamp int64
	Transient bool
}

// SysMessageSink receives the messages clients send to system
// conversations. Send must not block: it queues (bounded) or drops.
type SysMessageSink interface {
	SysMessage(m SysMessage)
}

// subscription is the value of FamSub.
type subscription struct {
	At    int64 `json:"at"`
	Muted bool  `json:"mu,omitempty"`
}

func (e *Engine) subKey(app, cid, clientID string) []byte {
	return e.convKey(app, cid, store.FamSub).Str(clientID).Bytes()
}

func (e *Engine) loadSub(app, cid, clientID string) (*subscription, error) {
	v, err := e.st.Get(e.subKey(app, cid, clientID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load subscription", err)
	}
	var s subscription
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, internal("decode subscription", err)
	}
	return &s, nil
}

func (e *Engine) putSub(b *store.Batch, app, cid, clientID string, s subscription) {
	v, _ := json.Marshal(s)
	b.Set(e.subKey(app, cid, clientID), v)
}

// subscriberEntry is one subscriber of a listing.
type subscriberEntry struct {
	ID  string
	Sub subscription
}

// subscribers lists subscribers after the exclusive cursor, at most limit
// (0 = all).
func (e *Engine) subscribers(app, cid, after string, limit int) ([]subscriberEntry, error) {
	prefix := e.convKey(app, cid, store.FamSub)
	lower := prefix.Bytes()
	if after != "" {
		lower = store.PrefixEnd(prefix.Str(after).Bytes())
	}
	var out []subscriberEntry
	err := e.st.Scan(lower, store.PrefixEnd(prefix.Bytes()), false, func(k, v []byte) (bool, error) {
		r, _, _, _ := store.ReadKey(k)
		_ = r.Str()
		id := r.Str()
		if err := r.Err(); err != nil {
			return false, err
		}
		var s subscription
		if err := json.Unmarshal(v, &s); err != nil {
			return false, err
		}
		out = append(out, subscriberEntry{ID: id, Sub: s})
		return limit <= 0 || len(out) < limit, nil
	})
	if err != nil {
		return nil, internal("scan subscribers", err)
	}
	return out, nil
}

// sysTarget loads a live system conversation (4313 for another kind).
func (e *Engine) sysTarget(app, cid string) (*convRecord, error) {
	r, err := e.loadLive(app, cid)
	if err != nil {
		return nil, err
	}
	if r.Kind != convSystem {
		return nil, protocol.ErrSystemConversationRequired.WithDetail("%q is not a system conversation", cid)
	}
	return r, nil
}

// visibleTo reports whether clientID sees m: messages to chosen clients of
// a system conversation are theirs only.
func (m *message) visibleTo(clientID string) bool {
	return len(m.To) == 0 || slices.Contains(m.To, clientID)
}

// newestFor is the newest message of r clientID sees (newestMessage for
// every kind but system conversations).
func (e *Engine) newestFor(app string, r *convRecord, clientID string) (*message, error) {
	if r.Kind != convSystem {
		return e.newestMessage(app, r.ID)
	}
	var m *message
	scanned := 0
	err := e.st.ScanPrefix(e.convKey(app, r.ID, store.FamMsg).Bytes(), true, func(_, v []byte) (bool, error) {
		x, err := decodeMessage(v)
		if err != nil {
			return false, err
		}
		scanned++
		if x.visibleTo(clientID) {
			m = x
			return false, nil
		}
		return scanned < maxUnreadScan, nil
	})
	if err != nil {
		return nil, internal("load newest message", err)
	}
	return m, nil
}

// sysDoc adds the requester's subscription to a system conversation's
// query document (joined is always present: Swift compares it with false).
func (e *Engine) sysDoc(app, clientID string, r *convRecord, d map[string]any) error {
	d["sys"] = true
	d["conv_type"] = convSystem
	delete(d, "c")
	s, err := e.loadSub(app, r.ID, clientID)
	if err != nil {
		return err
	}
	d["joined"] = s != nil
	if s != nil {
		d["joinedAt"] = s.At
		d["muted"] = s.Muted
	}
	return nil
}

// errSysUpstream tells handleDirect that the target is a system
// conversation: the message goes to the app's hook, not to members.
var errSysUpstream = errors.New("conversation: message to a system conversation")

// sysClientOps are the conv ops a client may address to a system
// conversation and that sysConvOp answers itself.
var sysClientOps = map[pb.OpType]bool{
	pb.OpType_add: true, pb.OpType_remove: true, pb.OpType_update: true, pb.OpType_mute: true,
	pb.OpType_unmute: true, pb.OpType_count: true, pb.OpType_member_info_update: true,
	pb.OpType_add_shutup: true, pb.OpType_remove_shutup: true, pb.OpType_members: true,
}

// sysConvOp answers a client's conv op on a system conversation; ok is
// false when cid is not one (the normal handler runs).
func (e *Engine) sysConvOp(c Caller, op pb.OpType, cm *pb.ConvCommand) (resp *pb.GenericCommand, ok bool, err error) {
	if !sysClientOps[op] || cm.GetCid() == "" {
		return nil, false, nil
	}
	r, err := e.loadConv(c.App, cm.GetCid())
	if err != nil || r == nil || r.Kind != convSystem {
		return nil, err != nil, err
	}
	switch op {
	case pb.OpType_add, pb.OpType_remove:
		ids := sortedSet(cm.M)
		if !isSelf(ids, c.ClientID) {
			return nil, true, protocol.ErrNormalConversationRequired.WithDetail("a system conversation is subscribed to by each client itself")
		}
		resp, err := e.sysSubscribe(c.App, r.ID, ids, op == pb.OpType_add)
		return resp, true, err
	case pb.OpType_mute, pb.OpType_unmute:
		resp, err := e.sysMute(c, r.ID, op == pb.OpType_mute)
		return resp, true, err
	case pb.OpType_count:
		subs, err := e.subscribers(c.App, r.ID, "", 0)
		if err != nil {
			return nil, true, err
		}
		return convResponse(pb.OpType_result, &pb.ConvCommand{Cid: strp(r.ID), Count: int32p(int32(len(subs)))}), true, nil
	default:
		return nil, true, protocol.ErrNormalConversationRequired.WithDetail("not a client operation on a system conversation")
	}
}

// sysSubscribe subscribes (add) or unsubscribes ids to system conversation
// cid. No membership pushes: the fan-out would reach every subscriber.
func (e *Engine) sysSubscribe(app, cid string, ids []string, add bool) (*pb.GenericCommand, error) {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.sysTarget(app, cid)
	if err != nil {
		return nil, err
	}
	now := e.nowMs()
	var allowed []string
	var failed failures
	b := e.st.NewBatch()
	changed := false
	for _, id := range ids {
		s, err := e.loadSub(app, cid, id)
		if err != nil {
			return nil, err
		}
		switch {
		case add && r.isBlocked(id):
			failed.add(protocol.ErrBlockedByConv, id)
			continue
		case add && s == nil:
			newest, err := e.newestMessage(app, cid)
			if err != nil {
				return nil, err
			}
			e.putSub(b, app, cid, id, subscription{At: now})
			e.indexClient(b, app, id, r, newest.ts(), now)
			changed = true
		case !add && s != nil:
			b.Delete(e.subKey(app, cid, id))
			e.unindexClient(b, app, id, cid)
			changed = true
		}
		allowed = append(allowed, id)
	}
	if changed {
		if err := e.commitConv(st, app, cid, b); err != nil {
			return nil, internal("commit subscription", err)
		}
	}
	op := pb.OpType_added
	if !add {
		op = pb.OpType_removed
	}
	return convResponse(op, &pb.ConvCommand{Cid: strp(cid), AllowedPids: nonNil(allowed), FailedPids: failed.proto(),
		Udate: isoDate(now)}), nil
}

// sysMute sets the caller's per-subscription push mute.
func (e *Engine) sysMute(c Caller, cid string, mute bool) (*pb.GenericCommand, error) {
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	s, err := e.loadSub(c.App, cid, c.ClientID)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, protocol.ErrMembershipRequired.WithDetail("subscribe to the system conversation first")
	}
	now := e.nowMs()
	if s.Muted != mute {
		s.Muted = mute
		b := e.st.NewBatch()
		e.putSub(b, c.App, cid, c.ClientID, *s)
		if err := e.commitConv(st, c.App, cid, b); err != nil {
			return nil, internal("commit mute", err)
		}
	}
	return convResponse(pb.OpType_updated, &pb.ConvCommand{Cid: strp(cid), Udate: isoDate(now)}), nil
}

// sysUpstream acknowledges a client's message to a system conversation and
// hands it to the app's hook. Nothing is stored or delivered.
func (e *Engine) sysUpstream(c Caller, dm *pb.DirectCommand) (*pb.GenericCommand, error) {
	now := e.nowMs()
	m := SysMessage{App: c.App, ID: newMessageID(now), ConvID: dm.GetCid(), From: c.ClientID, Timestamp: now,
		Transient: dm.GetTransient()}
	if dm.BinaryMsg != nil {
		m.Data, m.Bin = base64.StdEncoding.EncodeToString(dm.BinaryMsg), true
	} else {
		m.Data = dm.GetMsg()
	}
	if e.cfg.SysMessages != nil {
		e.cfg.SysMessages.SysMessage(m)
	}
	e.metrics.messages.WithLabelValues("system").Inc()
	return ackResponse(m.ConvID, m.ID, m.Timestamp), nil
}

// handleAdmin runs a server-side operation (see SystemCaller).
func (e *Engine) handleAdmin(ctx context.Context, c Caller, from string, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	cm := req.GetConvMessage()
	if cm == nil {
		cm = &pb.ConvCommand{}
	}
	switch {
	case req.GetCmd() == pb.CommandType_direct:
		return e.sysSend(c, from, req.GetDirectMessage())
	case req.GetCmd() != pb.CommandType_conv:
	case req.GetOp() == pb.OpType_start:
		return e.sysCreate(c.App, cm)
	case req.GetOp() == pb.OpType_update:
		return e.sysUpdate(c.App, cm)
	case req.GetOp() == pb.OpType_close:
		return e.sysDelete(c.App, cm.GetCid())
	case req.GetOp() == pb.OpType_add || req.GetOp() == pb.OpType_remove:
		ids := sortedSet(cm.M)
		if len(ids) == 0 {
			return nil, protocol.ErrInvalidMessagingTarget.WithDetail("no client id")
		}
		return e.sysSubscribe(c.App, cm.GetCid(), ids, req.GetOp() == pb.OpType_add)
	case req.GetOp() == pb.OpType_members:
		return e.sysSubscribers(c.App, cm)
	case req.GetOp() == pb.OpType_count:
		r, err := e.sysTarget(c.App, cm.GetCid())
		if err != nil {
			return nil, err
		}
		subs, err := e.subscribers(c.App, r.ID, "", 0)
		if err != nil {
			return nil, err
		}
		return convResponse(pb.OpType_result, &pb.ConvCommand{Cid: strp(r.ID), Count: int32p(int32(len(subs)))}), nil
	case req.GetOp() == pb.OpType_query:
		return e.convQuery(ctx, c, cm)
	}
	return nil, protocol.ErrInternal.WithDetail("unsupported server-side command %s", commandName(req))
}

// sysColumns validates columns for a system conversation record.
func sysColumns(j *pb.JsonObjectMessage) (map[string]any, error) {
	attr, err := parseAttr(j)
	if err != nil {
		return nil, err
	}
	for k := range attr {
		if reservedColumns[k] || k == "" || strings.HasPrefix(k, "_") {
			return nil, protocol.ErrConversationUpdateFailed.WithDetail("column %q cannot be set", k)
		}
	}
	return attr, nil
}

func (e *Engine) sysCreate(app string, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cols, err := sysColumns(cm.Attr)
	if err != nil {
		return nil, err
	}
	for k, v := range cols {
		if v == nil {
			delete(cols, k)
		}
	}
	now := e.nowMs()
	r := &convRecord{ID: newConvID(now), Kind: convSystem, Created: now, Updated: now, Columns: cols}
	if cm.GetCid() != "" {
		r.ID = cm.GetCid() // chosen by the router (routeAdmin)
	}
	st := e.convStripe(app, r.ID)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	if cm.GetCid() != "" {
		if err := e.checkNewID(app, r.ID); err != nil {
			return nil, err
		}
	}
	b := e.st.NewBatch()
	e.putConv(b, app, r)
	if err := e.commitConv(st, app, r.ID, b); err != nil {
		return nil, internal("commit system conversation", err)
	}
	return convResponse(pb.OpType_started, &pb.ConvCommand{Cid: strp(r.ID), Cdate: isoDate(now), Udate: isoDate(now)}), nil
}

func (e *Engine) sysUpdate(app string, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cols, err := sysColumns(cm.Attr)
	if err != nil {
		return nil, err
	}
	st := e.convStripe(app, cm.GetCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.sysTarget(app, cm.GetCid())
	if err != nil {
		return nil, err
	}
	if r.Columns == nil {
		r.Columns = map[string]any{}
	}
	for k, v := range cols {
		if v == nil {
			delete(r.Columns, k)
		} else {
			r.Columns[k] = v
		}
	}
	r.Updated = e.nowMs()
	b := e.st.NewBatch()
	e.putConv(b, app, r)
	if err := e.commitConv(st, app, r.ID, b); err != nil {
		return nil, internal("commit system conversation", err)
	}
	return convResponse(pb.OpType_updated, &pb.ConvCommand{Cid: strp(r.ID), Udate: isoDate(r.Updated)}), nil
}

// sysDelete deletes a system conversation and its subscriptions. Its
// messages stay until retention removes them (nobody can read them: the
// record is gone).
func (e *Engine) sysDelete(app, cid string) (*pb.GenericCommand, error) {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.sysTarget(app, cid)
	if err != nil {
		return nil, err
	}
	subs, err := e.subscribers(app, cid, "", 0)
	if err != nil {
		return nil, err
	}
	last, err := e.newestMessage(app, r.ID)
	if err != nil {
		return nil, err
	}
	b := e.st.NewBatch()
	b.Delete(e.convKey(app, r.ID, store.FamConv).Bytes())
	e.unindexConvOrder(b, app, r, last)
	for _, s := range subs {
		b.Delete(e.subKey(app, cid, s.ID))
		e.unindexClient(b, app, s.ID, cid)
	}
	if err := e.commitConv(st, app, cid, b); err != nil {
		return nil, internal("commit delete", err)
	}
	return convResponse(pb.OpType_closed, &pb.ConvCommand{Cid: strp(cid)}), nil
}

func (e *Engine) sysSubscribers(app string, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.sysTarget(app, cm.GetCid())
	if err != nil {
		return nil, err
	}
	limit := int(cm.GetLimit())
	if limit <= 0 || limit > MaxSubscriberPage {
		limit = MaxSubscriberPage
	}
	subs, err := e.subscribers(app, r.ID, cm.GetNext(), limit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(subs))
	for _, s := range subs {
		out = append(out, map[string]any{"subscriber": s.ID, "timestamp": s.Sub.At, "conv_id": r.ID})
	}
	data, _ := json.Marshal(out)
	return convResponse(pb.OpType_members, &pb.ConvCommand{Cid: strp(r.ID), Results: protocol.JSON(string(data))}), nil
}

// sysSend sends a server message to every subscriber of a system
// conversation (no toPeerIds) or to up to MaxSysRecipients chosen clients,
// subscribed or not. It is stored once (unless transient) and pushed after
// the commit, like a member's message.
func (e *Engine) sysSend(c Caller, from string, dm *pb.DirectCommand) (*pb.GenericCommand, error) {
	if dm == nil {
		return nil, protocol.ErrInvalidMessagingTarget.WithDetail("missing directMessage")
	}
	if from == "" {
		return nil, protocol.ErrInvalidMessagingTarget.WithDetail("from_client is required")
	}
	to := sortedSet(dm.ToPeerIds)
	if len(to) > MaxSysRecipients {
		return nil, protocol.ErrInvalidMessagingTarget.WithDetail("at most %d recipients", MaxSysRecipients)
	}
	if size := len(dm.GetMsg()) + len(dm.BinaryMsg) + len(dm.GetPushData()); size > protocol.MaxContentSize {
		return nil, protocol.ErrFrameTooLong.WithDetail("content of %d bytes exceeds %d", size, protocol.MaxContentSize)
	}
	cid := dm.GetCid()
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	r, err := e.sysTarget(c.App, cid)
	if err != nil {
		st.mu.Unlock()
		return nil, err
	}
	recipients := to
	mutedSubs := map[string]bool{}
	if len(to) == 0 {
		subs, err := e.subscribers(c.App, cid, "", 0)
		if err != nil {
			st.mu.Unlock()
			return nil, err
		}
		for _, s := range subs {
			recipients = append(recipients, s.ID)
			if s.Sub.Muted {
				mutedSubs[s.ID] = true
			}
		}
	}
	ts, prev, err := e.nextTsLocked(st, c.App, cid, !dm.GetTransient())
	if err != nil {
		st.mu.Unlock()
		return nil, err
	}
	m := &message{ID: newMessageID(ts), From: from, Ts: ts, Data: dm.GetMsg(), To: to, prevStored: prev, indexed: true}
	if dm.BinaryMsg != nil {
		m.Bin, m.IsBin, m.Data = dm.BinaryMsg, true, ""
	} else {
		m.Type, m.HasType = lcType(m.Data)
	}
	transient := dm.GetTransient()
	cmd := directPush(r, m, &pb.DirectCommand{}, transient)
	var g *gate
	if !transient {
		g = &gate{}
	}
	for chunk := range slices.Chunk(recipients, deliverBatch) {
		e.enqueue(st, push{app: c.App, to: chunk, cmd: cmd, gate: g})
	}
	if transient {
		st.mu.Unlock()
		e.drain(st)
		return ackResponse(cid, m.ID, m.Ts), nil
	}
	st.inflight++
	st.mu.Unlock()
	b := e.st.NewBatch()
	e.putMessage(b, c.App, cid, m)
	e.indexLastMessage(b, c.App, cid, m.prevStored, m.Ts)
	e.queuePush(b, c.App, r, m, dm.GetPushData(), recipients, func(id string) bool { return mutedSubs[id] })
	err = e.st.Commit(b)
	st.mu.Lock()
	st.inflight--
	st.mu.Unlock()
	e.openGate(st, g, err == nil)
	if err != nil {
		return nil, internal("commit message", err)
	}
	e.metrics.messages.WithLabelValues("stored").Inc()
	return ackResponse(cid, m.ID, m.Ts), nil
}

// nextTsLocked assigns the conversation's next timestamp, strictly after
// every one assigned before (transient messages included), for a message
// that is stored or not (transient). prev is the timestamp of the stored
// message before it (0: none). Caller holds st.mu.
func (e *Engine) nextTsLocked(st *stripe, app, cid string, stored bool) (ts, prev int64, err error) {
	if !e.shards.Coordinates(e.shards.ConvShard(app, cid)) {
		return 0, 0, ErrNotCoordinator
	}
	epoch := e.tsEpoch.Load()
	k := roomKey(app, cid)
	cached, ok := st.lastTs[k]
	last, prev := cached.ts, cached.stored
	if !ok || cached.epoch != epoch {
		newest, err := e.newestMessage(app, cid)
		if err != nil {
			return 0, 0, err
		}
		last, prev = max(last, newest.ts()), max(prev, newest.ts())
	}
	e.recent.start(k, epoch, last)
	ts = max(e.nowMs(), last+1)
	next := cachedTs{ts: ts, stored: prev, epoch: epoch}
	if stored {
		next.stored = ts
	}
	if st.lastTs == nil {
		st.lastTs = map[string]cachedTs{}
	}
	st.lastTs[k] = next
	return ts, prev, nil
}

// routeAdmin routes a server-side operation: to the system conversation's
// coordinator when it names one (sends, updates, subscriptions, delete),
// to the new one's when it creates one (routeNew), anywhere for a query.
func (e *Engine) routeAdmin(c Caller, req *pb.GenericCommand) []Routed {
	cid := req.GetConvMessage().GetCid()
	if req.GetCmd() == pb.CommandType_direct {
		cid = req.GetDirectMessage().GetCid()
	}
	if req.GetCmd() == pb.CommandType_conv && req.GetOp() == pb.OpType_start {
		return e.routeNew(c, req)
	}
	if req.GetCmd() == pb.CommandType_conv && req.GetOp() == pb.OpType_query {
		cid = ""
	}
	return e.routeCid(c, req, cid)
}

// isSubscribed reports whether clientID subscribes to system conversation
// cid.
func (e *Engine) isSubscribed(app, cid, clientID string) (bool, error) {
	s, err := e.loadSub(app, cid, clientID)
	return s != nil, err
}

// isReader reports whether clientID keeps a read pointer in r: a member,
// or a subscriber of a system conversation.
func (e *Engine) isReader(app string, r *convRecord, clientID string) bool {
	if r.Kind != convSystem {
		return r.isMember(clientID)
	}
	ok, err := e.isSubscribed(app, r.ID, clientID)
	return err == nil && ok
}
