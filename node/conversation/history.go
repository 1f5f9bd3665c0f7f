package conversation

import (
	"context"
	"encoding/base64"
	"slices"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// History page sizes (spec 3.9.2).
const (
	defaultLogsLimit = 20
	maxLogsLimit     = 100
)

// logsWindow is a validated history request.
type logsWindow struct {
	limit                 int
	maxBytes              int  // message bytes (wireSize) per page; 0: no bound
	newer                 bool // direction NEW
	t, tt                 int64
	mid, tmid             string
	tIncluded, ttIncluded bool
	lctype                int64
	hasType               bool
	viewer                string // skips messages to other chosen clients (system conversations)
}

func logsRequest(lm *pb.LogsCommand) logsWindow {
	w := logsWindow{limit: defaultLogsLimit, maxBytes: MaxLogsPageBytes, t: lm.GetT(), tt: lm.GetTt(), mid: lm.GetMid(), tmid: lm.GetTmid(),
		tIncluded: lm.GetTIncluded(), ttIncluded: lm.GetTtIncluded(),
		newer: lm.GetDirection() == pb.LogsCommand_NEW}
	switch {
	case lm.Limit != nil:
		w.limit = int(lm.GetLimit())
	case lm.L != nil:
		w.limit = int(lm.GetL())
	}
	w.limit = min(max(w.limit, 0), maxLogsLimit)
	if lm.Lctype != nil {
		w.lctype, w.hasType = int64(lm.GetLctype()), true
	}
	return w
}

// bounds returns the scan range [lower, upper) of the window over the
// conversation's message keys (timestamp, id).
func (w logsWindow) bounds(prefix store.Key) (lower, upper []byte) {
	startT, startMid, startIncl := w.t, w.mid, w.tIncluded
	endT, endMid, endIncl := w.tt, w.tmid, w.ttIncluded
	lower, upper = prefix.Bytes(), store.PrefixEnd(prefix.Bytes())
	if w.newer {
		if startT > 0 {
			lower = lowerBound(prefix, startT, startMid, startIncl)
		}
		if endT > 0 {
			upper = upperBound(prefix, endT, endMid, endIncl)
		}
		return lower, upper
	}
	if startT > 0 {
		upper = upperBound(prefix, startT, startMid, startIncl)
	}
	if endT > 0 {
		lower = lowerBound(prefix, endT, endMid, endIncl)
	}
	return lower, upper
}

// lowerBound is the first key at or after point (t, mid) (inclusive) or
// after it (exclusive). Without mid the point covers every message at t.
func lowerBound(prefix store.Key, t int64, mid string, incl bool) []byte {
	k := prefix.Int64(t)
	if mid != "" {
		k = k.Str(mid)
	}
	if incl {
		return append([]byte(nil), k.Bytes()...)
	}
	return store.PrefixEnd(k.Bytes())
}

// upperBound is the exclusive upper key that includes point (t, mid) when
// incl and stops right before it otherwise.
func upperBound(prefix store.Key, t int64, mid string, incl bool) []byte {
	k := prefix.Int64(t)
	if mid != "" {
		k = k.Str(mid)
	}
	if incl {
		return store.PrefixEnd(k.Bytes())
	}
	return append([]byte(nil), k.Bytes()...)
}

// handleLogs implements logs (spec 3.9).
func (e *Engine) handleLogs(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	lm := req.GetLogsMessage()
	if lm == nil {
		lm = &pb.LogsCommand{}
	}
	r, err := e.loadLive(c.App, lm.GetCid())
	if err != nil {
		return nil, err
	}
	// A system conversation's history needs no subscription; each client
	// sees the broadcasts and its own messages (sysconv.go).
	if r.Kind != convTransient && r.Kind != convSystem && !c.Server() && !r.isMember(c.ClientID) {
		return nil, protocol.ErrConversationLogRejected
	}
	w := logsRequest(lm)
	w.viewer = c.ClientID
	if c.Server() && lm.Limit != nil {
		w.limit = min(max(int(lm.GetLimit()), 0), maxServerLogsLimit)
	}
	msgs, err := e.history(ctx, c.App, r.ID, w)
	if err != nil {
		return nil, err
	}
	receipts, err := e.peerReceipts(c.App, r)
	if err != nil {
		return nil, err
	}
	out := &pb.LogsCommand{}
	for _, m := range msgs {
		out.Logs = append(out.Logs, logItem(r, m, receipts))
	}
	resp := response(pb.CommandType_logs, 0, false)
	resp.LogsMessage = out
	return resp, nil
}

// MaxLogsPageBytes bounds the message bytes (message.wireSize) of one
// history page. A page is cut to fit, keeping the messages nearest its
// starting point, so the next page the SDK asks for starts where this one
// ended. 256 KiB is half the outgoing frame limit after the base64
// subprotocol's 4/3 expansion, with room for the envelopes; 100 messages
// of the 5 KB limit do not fit, so without the cut such a page closed the
// reader's socket.
const MaxLogsPageBytes = 256 << 10

// wireSize approximates the bytes m adds to a frame: its content and
// mentioned ids (the envelope is small and bounded).
func (m *message) wireSize() int {
	n := len(m.Data) + len(m.Bin) + len(m.ID) + len(m.From) + 32
	for _, id := range m.MentionPids {
		n += len(id) + 2
	}
	return n
}

// history returns the window's messages in ascending (timestamp, id) order,
// at most w.limit and at most w.maxBytes of them (at least one).
func (e *Engine) history(ctx context.Context, app, cid string, w logsWindow) ([]*message, error) {
	if w.limit == 0 {
		return nil, nil
	}
	prefix := e.convKey(app, cid, store.FamMsg)
	lower, upper := w.bounds(prefix)
	if upper != nil && string(lower) >= string(upper) {
		return nil, nil
	}
	var out []*message
	size := 0
	err := e.st.Scan(lower, upper, !w.newer, func(_, v []byte) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		m, err := decodeMessage(v)
		if err != nil {
			return false, err
		}
		if (w.hasType && (!m.HasType || m.Type != w.lctype)) || !m.visibleTo(w.viewer) {
			return true, nil
		}
		size += m.wireSize()
		if w.maxBytes > 0 && len(out) > 0 && size > w.maxBytes {
			return false, nil // cut to fit: the page ends at the previous message
		}
		out = append(out, m)
		return len(out) < w.limit, nil
	})
	if err != nil {
		return nil, internal("scan history", err)
	}
	if !w.newer {
		slices.Reverse(out)
	}
	return out, nil
}

// receiptState is what the other member of a two-member conversation has
// received and read.
type receiptState struct {
	member string
	state  clientState
}

// peerReceipts returns the delivery/read state of each member of a
// two-member conversation, or nil for any other conversation.
func (e *Engine) peerReceipts(app string, r *convRecord) ([]receiptState, error) {
	if len(r.Members) != 2 || r.Kind == convTransient {
		return nil, nil
	}
	out := make([]receiptState, 0, 2)
	for _, id := range r.Members {
		s, err := e.loadClientState(app, id, r.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, receiptState{member: id, state: s})
	}
	return out, nil
}

func logItem(r *convRecord, m *message, receipts []receiptState) *pb.LogItem {
	it := &pb.LogItem{From: strp(m.From), Timestamp: int64p(m.Ts), MsgId: strp(m.ID), ConvType: int32p(int32(r.Kind))}
	if m.IsBin {
		it.Data, it.Bin = strp(base64.StdEncoding.EncodeToString(m.Bin)), boolp(true)
	} else {
		it.Data = strp(m.Data)
	}
	if m.PatchTs > 0 {
		it.PatchTimestamp = int64p(m.PatchTs)
	}
	if m.MentionAll {
		it.MentionAll = boolp(true)
	}
	it.MentionPids = m.MentionPids
	for _, rs := range receipts {
		if rs.member == m.From {
			continue
		}
		if rs.state.AckTs >= m.Ts && rs.state.AckAt > 0 {
			it.AckAt = int64p(rs.state.AckAt)
		}
		if rs.state.ReadTs >= m.Ts && rs.state.ReadAt > 0 {
			it.ReadAt = int64p(rs.state.ReadAt)
			if it.AckAt == nil {
				it.AckAt = int64p(rs.state.ReadAt)
			}
		}
	}
	return it
}
