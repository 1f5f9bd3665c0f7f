package conversation

import (
	"context"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// maxAckScan bounds the messages one receiver ack looks at for receipts.
// The JS SDK acks at most one second of messages per conversation.
const maxAckScan = 1000

// handleReceiverAck implements the receiver delivery ack (spec 3.5.5): it
// advances the client's delivery pointer and sends delivery receipts for
// r=true messages. It never answers.
func (e *Engine) handleReceiverAck(ctx context.Context, c Caller, req *pb.GenericCommand) error {
	am := req.GetAckMessage()
	if am == nil {
		return nil
	}
	r, err := e.loadConv(c.App, am.GetCid())
	if err != nil || r == nil || r.expired(e.nowMs()) || r.Kind == convTransient || !r.isMember(c.ClientID) {
		return err
	}
	var msgs []*message
	switch {
	case am.Mid != nil:
		m, err := e.lookupMessage(c.App, r.ID, am.GetMid())
		if err != nil || m == nil {
			return err
		}
		msgs = []*message{m}
	case am.Tots != nil:
		from := am.GetFromts()
		if am.Fromts == nil || from > am.GetTots() {
			from = am.GetTots()
		}
		msgs, err = e.history(ctx, c.App, r.ID, logsWindow{limit: maxAckScan, newer: true,
			t: from, tIncluded: true, tt: am.GetTots(), ttIncluded: true})
		if err != nil {
			return err
		}
	default:
		return nil
	}
	if len(msgs) == 0 {
		return nil
	}
	now := e.nowMs()
	top := msgs[len(msgs)-1].Ts
	b := e.st.NewBatch()
	lock := e.clientLock(c.App, c.ClientID)
	lock.Lock()
	s, err := e.loadClientState(c.App, c.ClientID, r.ID)
	if err != nil {
		lock.Unlock()
		b.Close()
		return err
	}
	if top > s.AckTs {
		s.AckTs, s.AckAt = top, now
		e.putClientState(b, c.App, c.ClientID, r.ID, s)
	}
	var ps []push
	for _, m := range msgs {
		if m.Receipt && m.From != c.ClientID {
			p := newPush(pb.CommandType_rcp, nil)
			p.RcpMessage = &pb.RcpCommand{Id: strp(m.ID), Cid: strp(r.ID), T: int64p(now), From: strp(c.ClientID)}
			e.reliable(b, c.App, []string{m.From}, p)
			ps = append(ps, push{app: c.App, to: []string{m.From}, cmd: p})
		}
	}
	err = e.commitIfAny(b)
	lock.Unlock()
	if err != nil {
		return internal("commit ack", err)
	}
	e.deliverConv(c.App, r.ID, ps...)
	return nil
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
// receipts in two-member conversations. It never answers.
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
	if err != nil || r == nil || r.expired(e.nowMs()) || r.Kind == convTransient || !r.isMember(c.ClientID) {
		return err
	}
	target := r.LastTs
	if t.GetTimestamp() > 0 {
		target = min(t.GetTimestamp(), r.LastTs)
	}
	now := e.nowMs()
	b := e.st.NewBatch()
	lock := e.clientLock(c.App, c.ClientID)
	lock.Lock()
	s, err := e.loadClientState(c.App, c.ClientID, r.ID)
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
	if target > old && len(r.Members) == 2 {
		ps, err = e.readReceipt(b, c, r, old, target, t.GetMid())
	}
	if err == nil {
		err = e.st.Commit(b)
	} else {
		b.Close()
	}
	lock.Unlock()
	if err != nil {
		return internal("commit read", err)
	}
	tuple, err := e.unreadTuple(c.App, c.ClientID, r, s)
	if err != nil {
		return err
	}
	u := newPush(pb.CommandType_unread, nil)
	u.UnreadMessage = &pb.UnreadCommand{Convs: []*pb.UnreadTuple{tuple}, NotifTime: int64p(now)}
	ps = append(ps, push{app: c.App, to: []string{c.ClientID}, except: c.Session, cmd: u})
	e.deliverConv(c.App, r.ID, ps...)
	return nil
}

// readReceipt builds the read receipt for the other member of a two-member
// conversation when one of its r=true messages in (old, target] was read.
func (e *Engine) readReceipt(b *store.Batch, c Caller, r *convRecord, old, target int64, mid string) ([]push, error) {
	other := r.Members[0]
	if other == c.ClientID {
		other = r.Members[1]
	}
	msgs, err := e.history(context.Background(), c.App, r.ID, logsWindow{limit: maxAckScan, t: target, tIncluded: true, tt: old})
	if err != nil {
		return nil, err
	}
	var newest *message
	for _, m := range msgs {
		if m.From == other && m.Receipt {
			newest = m
		}
	}
	if newest == nil {
		return nil, nil
	}
	id := newest.ID
	if mid != "" {
		id = mid
	}
	p := newPush(pb.CommandType_rcp, nil)
	p.RcpMessage = &pb.RcpCommand{Id: strp(id), Cid: strp(r.ID), T: int64p(target), Read: boolp(true), From: strp(c.ClientID)}
	e.reliable(b, c.App, []string{other}, p)
	return []push{{app: c.App, to: []string{other}, cmd: p}}, nil
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
