package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Send sends m to the conversation (direct) and returns it as stored: id
// and server timestamp from the ack. A rejection is an *Error (4401 not a
// member, 4303 expired temporary conversation, 4109 too large, ...).
func (c *Conversation) Send(ctx context.Context, m *OutgoingMessage) (*Message, error) {
	if m.DedupToken == "" {
		m.DedupToken = newUUID()
	}
	d := &pb.DirectCommand{
		Cid:         new(c.id),
		Dt:          new(m.DedupToken),
		MentionAll:  new(m.MentionAll),
		MentionPids: m.MentionPids,
	}
	if m.Binary != nil {
		d.BinaryMsg = m.Binary
	} else {
		d.Msg = new(m.Content)
	}
	if m.Transient {
		d.Transient = new(true)
	}
	if m.Receipt {
		d.R = new(true)
	}
	if m.Will {
		d.Will = new(true)
	}
	if m.PushData != nil {
		pd, err := marshalJSON(m.PushData)
		if err != nil {
			return nil, err
		}
		d.PushData = new(pd)
	}
	cmd := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: d}
	if m.Priority != 0 {
		cmd.Priority = new(int32(m.Priority))
	}
	resp, err := c.cl.request(ctx, cmd)
	if err != nil {
		return nil, err
	}
	ack := resp.GetAckMessage()
	if resp.GetCmd() != pb.CommandType_ack || ack == nil {
		return nil, fmt.Errorf("%w: %s to direct", ErrUnexpectedResponse, cmdName(resp))
	}
	if ack.Code != nil {
		return nil, &Error{Code: ack.GetCode(), Reason: ack.GetReason(), AppCode: ack.GetAppCode(), AppMsg: ack.GetAppMsg()}
	}
	return &Message{
		ID: ack.GetUid(), ConversationID: c.id, From: c.cl.id, Timestamp: millis(ack.GetT()),
		Content: m.Content, Binary: m.Binary, Transient: m.Transient,
		MentionAll: m.MentionAll, MentionPids: m.MentionPids,
	}, nil
}

// Direction of a history query.
type Direction int

// History directions (LogsCommand.QueryDirection).
const (
	// DirectionAuto is NewToOld, except OldToNew when both StartTime and
	// EndTime are set and EndTime is later (the JS SDK's rule).
	DirectionAuto Direction = 0
	NewToOld      Direction = 1
	OldToNew      Direction = 2
)

// HistoryQuery selects messages (the SDK's queryMessages options). Zero
// times and ids mean "unbounded".
type HistoryQuery struct {
	// Limit is the page size, 1..100; zero means the server default (20).
	Limit          int
	StartTime      time.Time
	StartMessageID string
	StartClosed    bool
	EndTime        time.Time
	EndMessageID   string
	EndClosed      bool
	Direction      Direction
	// Type keeps only messages with this _lctype; zero means any.
	Type int
}

// QueryMessages returns one page of history, oldest first whatever the
// direction.
func (c *Conversation) QueryMessages(ctx context.Context, q HistoryQuery) ([]*Message, error) {
	lm := &pb.LogsCommand{Cid: new(c.id)}
	if q.Limit > 0 {
		lm.L = new(int32(q.Limit))
	}
	if !q.StartTime.IsZero() {
		lm.T = new(q.StartTime.UnixMilli())
		if q.StartMessageID != "" {
			lm.Mid = new(q.StartMessageID)
		}
	}
	if q.StartClosed {
		lm.TIncluded = new(true)
	}
	if !q.EndTime.IsZero() {
		lm.Tt = new(q.EndTime.UnixMilli())
		if q.EndMessageID != "" {
			lm.Tmid = new(q.EndMessageID)
		}
	}
	if q.EndClosed {
		lm.TtIncluded = new(true)
	}
	dir := q.Direction
	if dir == DirectionAuto && !q.StartTime.IsZero() && !q.EndTime.IsZero() && q.EndTime.After(q.StartTime) {
		dir = OldToNew
	}
	if dir != DirectionAuto {
		lm.Direction = pb.LogsCommand_QueryDirection(dir).Enum()
	}
	if q.Type != 0 {
		lm.Lctype = new(int32(q.Type))
	}
	resp, err := c.cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), LogsMessage: lm})
	if err != nil {
		return nil, err
	}
	items := resp.GetLogsMessage().GetLogs()
	out := make([]*Message, 0, len(items))
	for _, it := range items {
		m := &Message{
			ID: it.GetMsgId(), ConversationID: c.id, From: it.GetFrom(), Timestamp: millis(it.GetTimestamp()),
			Content: it.GetData(), MentionAll: it.GetMentionAll(), MentionPids: it.GetMentionPids(),
			PatchedAt: millis(it.GetPatchTimestamp()), DeliveredAt: millis(it.GetAckAt()), ReadAt: millis(it.GetReadAt()),
		}
		if it.GetBin() {
			b, err := base64.StdEncoding.DecodeString(it.GetData())
			if err != nil {
				return nil, fmt.Errorf("%w: binary log item %s: %v", ErrUnexpectedResponse, m.ID, err)
			}
			m.Binary, m.Content = b, ""
		}
		out = append(out, m)
	}
	return out, nil
}

// MessageIterator pages through history from newest to oldest (the SDK's
// createMessagesIterator). It is not safe for concurrent use.
type MessageIterator struct {
	conv  *Conversation
	limit int
	next  *Message // oldest message of the previous page
	done  bool
}

// MessageIterator returns an iterator with pages of limit messages (zero:
// 20).
func (c *Conversation) MessageIterator(limit int) *MessageIterator {
	if limit <= 0 {
		limit = 20
	}
	return &MessageIterator{conv: c, limit: limit}
}

// ErrIteratorDone is returned by Next after the last page.
var ErrIteratorDone = errors.New("client: no more messages")

// Next returns the next older page, oldest first. done reports that this is
// the last page (fewer than limit messages); after it Next returns
// ErrIteratorDone.
func (it *MessageIterator) Next(ctx context.Context) (page []*Message, done bool, err error) {
	if it.done {
		return nil, true, ErrIteratorDone
	}
	q := HistoryQuery{Limit: it.limit}
	if it.next != nil {
		q.StartTime, q.StartMessageID = it.next.Timestamp, it.next.ID
	}
	page, err = it.conv.QueryMessages(ctx, q)
	if err != nil {
		return nil, false, err
	}
	if len(page) < it.limit {
		it.done = true
	} else {
		it.next = page[0]
	}
	return page, it.done, nil
}

// Read marks the conversation read up to m (the newest message seen), or up
// to now if m is nil (read, no response). It updates the unread count on
// the client's other devices and sends read receipts.
func (c *Conversation) Read(m *Message) error {
	t := &pb.ReadTuple{Cid: new(c.id)}
	if m != nil {
		t.Timestamp = new(m.Timestamp.UnixMilli())
		if m.From != c.cl.id {
			t.Mid = new(m.ID)
		}
	} else {
		t.Timestamp = new(time.Now().UnixMilli())
	}
	return c.cl.fire(&pb.GenericCommand{Cmd: pb.CommandType_read.Enum(), ReadMessage: &pb.ReadCommand{Convs: []*pb.ReadTuple{t}}})
}

// UpdateMessage replaces the content of a message this client sent
// (patch/modify) and returns the patch time.
func (c *Conversation) UpdateMessage(ctx context.Context, old *Message, m *OutgoingMessage) (time.Time, error) {
	p := &pb.PatchItem{
		Cid: new(c.id), Mid: new(old.ID), Timestamp: new(old.Timestamp.UnixMilli()),
		MentionAll: new(m.MentionAll), MentionPids: m.MentionPids,
	}
	if m.Binary != nil {
		p.BinaryMsg = m.Binary
	} else {
		p.Data = new(m.Content)
	}
	return c.patch(ctx, p)
}

// RecallMessage recalls a message this client sent; its content becomes
// {"_lctype":-127}.
func (c *Conversation) RecallMessage(ctx context.Context, old *Message) (time.Time, error) {
	return c.patch(ctx, &pb.PatchItem{
		Cid: new(c.id), Mid: new(old.ID), Timestamp: new(old.Timestamp.UnixMilli()),
		Recall: new(true),
	})
}

func (c *Conversation) patch(ctx context.Context, p *pb.PatchItem) (time.Time, error) {
	resp, err := c.cl.request(ctx, &pb.GenericCommand{
		Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_modify.Enum(),
		PatchMessage: &pb.PatchCommand{Patches: []*pb.PatchItem{p}},
	})
	if err != nil {
		return time.Time{}, err
	}
	return millis(resp.GetPatchMessage().GetLastPatchTime()), nil
}
