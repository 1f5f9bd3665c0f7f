package client

import (
	"encoding/json"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// handlePush turns a server push into an Event. It runs on the socket's
// read goroutine and never blocks.
func (cl *IMClient) handlePush(cmd *pb.GenericCommand) {
	if cmd.GetNotificationType() == protocol.NotificationReliable {
		cl.mu.Lock()
		if ts := cmd.GetServerTs(); ts > cl.mu.notifCursor {
			cl.mu.notifCursor = ts
		}
		cl.mu.Unlock()
	}
	switch cmd.GetCmd() {
	case pb.CommandType_direct:
		cl.onDirect(cmd.GetDirectMessage())
	case pb.CommandType_conv:
		cl.onConv(cmd)
	case pb.CommandType_unread:
		cl.onUnread(cmd.GetUnreadMessage())
	case pb.CommandType_rcp:
		r := cmd.GetRcpMessage()
		cl.emit(ReceiptEvent{ConversationID: r.GetCid(), MessageID: r.GetId(), From: r.GetFrom(), At: millis(r.GetT()), Read: r.GetRead()})
	case pb.CommandType_patch:
		cl.onPatch(cmd.GetPatchMessage())
	case pb.CommandType_session:
		if cmd.GetOp() == pb.OpType_closed {
			sm := cmd.GetSessionMessage()
			if sm.GetCode() == protocol.ErrSessionConflict.Code {
				cl.terminate(ConflictEvent{Reason: sm.GetReason(), Detail: sm.GetDetail()})
			} else {
				cl.terminate(CloseEvent{Code: sm.GetCode(), Reason: sm.GetReason(), Detail: sm.GetDetail()})
			}
			return
		}
		cl.emit(UnknownEvent{Command: cmd})
	default:
		cl.emit(UnknownEvent{Command: cmd})
	}
}

// convTypeTransient is a chat room's convType in a direct push.
const convTypeTransient = 2

func (cl *IMClient) onDirect(d *pb.DirectCommand) {
	m := &Message{
		ID:             d.GetId(),
		ConversationID: d.GetCid(),
		From:           d.GetFromPeerId(),
		Timestamp:      millis(d.GetTimestamp()),
		Content:        d.GetMsg(),
		Binary:         d.GetBinaryMsg(),
		Transient:      d.GetTransient(),
		MentionAll:     d.GetMentionAll(),
		MentionPids:    d.GetMentionPids(),
		PatchedAt:      millis(d.GetPatchTimestamp()),
	}
	if d.BinaryMsg != nil && m.Binary == nil {
		m.Binary = []byte{}
	}
	cl.emit(MessageEvent{Message: m})
	// Like the JS SDK, no receiver ack for a transient message, one's own,
	// or a chat room's (convType 2): a room keeps no delivery state, and
	// the ack would cost the server a command per receiver for nothing.
	if cl.opts.NoAutoAck || m.Transient || m.From == cl.id || d.GetConvType() == convTypeTransient {
		return
	}
	cl.queueAck(m.ConversationID, d.GetTimestamp())
}

// ackRange is the span of message timestamps received in one conversation
// since the last flush.
type ackRange struct{ from, to int64 }

// queueAck records a received message for the next batched receiver ack.
func (cl *IMClient) queueAck(cid string, ts int64) {
	cl.ackMu.Lock()
	defer cl.ackMu.Unlock()
	if cl.acks == nil {
		cl.acks = make(map[string]ackRange)
	}
	r, ok := cl.acks[cid]
	if !ok {
		r = ackRange{from: ts, to: ts}
	}
	r.from, r.to = min(r.from, ts), max(r.to, ts)
	cl.acks[cid] = r
}

// flushAcks sends one ack {cid, fromts, tots} per conversation with
// received messages (the JS SDK's shape; no message ids).
func (cl *IMClient) flushAcks() {
	cl.ackMu.Lock()
	acks := cl.acks
	cl.acks = nil
	cl.ackMu.Unlock()
	for cid, r := range acks {
		_ = cl.fire(&pb.GenericCommand{
			Cmd:        pb.CommandType_ack.Enum(),
			AckMessage: &pb.AckCommand{Cid: new(cid), Fromts: new(r.from), Tots: new(r.to)},
		})
	}
}

func (cl *IMClient) onConv(cmd *pb.GenericCommand) {
	cm := cmd.GetConvMessage()
	op := cmd.GetOp()
	if kind, ok := membershipOps[op]; ok {
		cl.emit(MembershipEvent{Kind: kind, ConversationID: cm.GetCid(), Members: cm.GetM(), By: cm.GetInitBy(), At: isoTime(cm.GetUdate())})
		return
	}
	switch op {
	case pb.OpType_updated:
		cl.emit(InfoUpdatedEvent{
			ConversationID: cm.GetCid(),
			Attributes:     jsonObject(cm.GetAttr().GetData()),
			Modified:       jsonObject(cm.GetAttrModified().GetData()),
			By:             cm.GetInitBy(),
			At:             isoTime(cm.GetUdate()),
		})
	case pb.OpType_member_info_changed:
		cl.emit(MemberInfoUpdatedEvent{ConversationID: cm.GetCid(), Member: cm.GetInfo().GetPid(), Role: cm.GetInfo().GetRole(), By: cm.GetInitBy()})
	default:
		cl.emit(UnknownEvent{Command: cmd})
	}
}

func (cl *IMClient) onUnread(u *pb.UnreadCommand) {
	if nt := u.GetNotifTime(); nt != 0 {
		cl.mu.Lock()
		cl.mu.lastUnreadNotifTime = nt
		cl.mu.Unlock()
	}
	ev := UnreadEvent{NotifTime: millis(u.GetNotifTime())}
	for _, t := range u.GetConvs() {
		uc := UnreadCount{ConversationID: t.GetCid(), Count: int(t.GetUnread()), Mentioned: t.GetMentioned()}
		if t.GetMid() != "" {
			uc.LastMessage = &Message{
				ID: t.GetMid(), ConversationID: t.GetCid(), From: t.GetFrom(), Timestamp: millis(t.GetTimestamp()),
				Content: t.GetData(), Binary: t.GetBinaryMsg(), PatchedAt: millis(t.GetPatchTimestamp()),
			}
		}
		ev.Conversations = append(ev.Conversations, uc)
	}
	cl.emit(ev)
}

func (cl *IMClient) onPatch(p *pb.PatchCommand) {
	if lp := p.GetLastPatchTime(); lp != 0 {
		cl.mu.Lock()
		if lp > cl.mu.lastPatchTime {
			cl.mu.lastPatchTime = lp
		}
		cl.mu.Unlock()
	}
	for _, it := range p.GetPatches() {
		m := &Message{
			ID: it.GetMid(), ConversationID: it.GetCid(), From: it.GetFrom(), Timestamp: millis(it.GetTimestamp()),
			Content: it.GetData(), Binary: it.GetBinaryMsg(), MentionAll: it.GetMentionAll(), MentionPids: it.GetMentionPids(),
			PatchedAt: millis(it.GetPatchTimestamp()),
		}
		cl.emit(PatchEvent{Message: m, Recall: it.GetRecall(), Code: it.GetPatchCode(), Reason: it.GetPatchReason()})
	}
}

// millis converts protocol milliseconds to a time; 0 means the zero time.
func millis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// isoTime parses an ISO-8601 date of the protocol; "" or garbage gives zero.
func isoTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// jsonObject decodes a JSON object; invalid or empty input gives nil.
func jsonObject(data string) map[string]any {
	if data == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		return nil
	}
	return m
}
