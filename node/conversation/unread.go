package conversation

import (
	"context"
	"slices"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// Unread limits (spec 3.12.1, section 5).
const (
	maxUnreadCount = 100  // per conversation
	maxUnreadConvs = 50   // per login summary
	maxUnreadScan  = 1000 // messages looked at per conversation
)

// unreadCount counts the messages from others after the read pointer (capped
// at 100) and whether one of them mentions the client.
func (e *Engine) unreadCount(app, clientID, cid string, readTs int64) (int, bool, error) {
	prefix := e.convKey(app, cid, store.FamMsg)
	lower := prefix.Int64(readTs + 1).Bytes()
	n, scanned, mentioned := 0, 0, false
	err := e.st.Scan(lower, store.PrefixEnd(prefix.Bytes()), false, func(_, v []byte) (bool, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return false, err
		}
		scanned++
		if m.From != clientID && m.visibleTo(clientID) {
			n++
			mentioned = mentioned || m.mentions(clientID)
		}
		return n < maxUnreadCount && scanned < maxUnreadScan, nil
	})
	if err != nil {
		return 0, false, internal("count unread", err)
	}
	return n, mentioned, nil
}

// unreadTuple builds the client's UnreadTuple for r; l is r's newest message
// or the newest the client sees, or nil. A read pointer at or past l leaves
// nothing to count (what the client does not see is never counted), so the
// common case, a client that read everything, costs no scan.
func (e *Engine) unreadTuple(app, clientID string, r *convRecord, s clientState, l *message) (*pb.UnreadTuple, error) {
	var n int
	var mentioned bool
	if l == nil || l.Ts > s.ReadTs {
		var err error
		if n, mentioned, err = e.unreadCount(app, clientID, r.ID, s.ReadTs); err != nil {
			return nil, err
		}
	}
	t := &pb.UnreadTuple{Cid: strp(r.ID), Unread: int32p(int32(n)), ConvType: int32p(int32(r.Kind))}
	if n > 0 && mentioned {
		t.Mentioned = boolp(true)
	}
	if l != nil {
		t.Mid, t.Timestamp, t.From = strp(l.ID), int64p(l.Ts), strp(l.From)
		if l.IsBin {
			t.BinaryMsg = l.Bin
		} else {
			t.Data = strp(l.Data)
		}
		if l.PatchTs > 0 {
			t.PatchTimestamp = int64p(l.PatchTs)
		}
	}
	return t, nil
}

// UnreadSummary returns the unread push sent after login (spec 3.1.8): with
// lastNotifTime > 0 the conversations whose unread state changed after it,
// otherwise those with unread messages; newest activity first, at most 50.
// It returns nil if there is nothing to report. Safe for concurrent use.
func (e *Engine) UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error) {
	cids, err := e.clientConvs(app, clientID)
	if err != nil {
		return nil, err
	}
	now := e.nowMs()
	type entry struct {
		t  *pb.UnreadTuple
		at int64
	}
	var entries []entry
	for _, cid := range cids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := e.loadConv(app, cid)
		if err != nil {
			return nil, err
		}
		if r == nil || r.expired(now) {
			continue
		}
		s, err := e.loadClientState(app, clientID, cid)
		if err != nil {
			return nil, err
		}
		last, err := e.newestFor(app, r, clientID)
		if err != nil {
			return nil, err
		}
		if lastNotifTime > 0 && last.ts() <= lastNotifTime && s.Changed <= lastNotifTime {
			continue
		}
		t, err := e.unreadTuple(app, clientID, r, s, last)
		if err != nil {
			return nil, err
		}
		if lastNotifTime <= 0 && t.GetUnread() == 0 {
			continue
		}
		entries = append(entries, entry{t: t, at: max(last.ts(), s.Changed)})
	}
	if len(entries) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		switch {
		case a.at > b.at:
			return -1
		case a.at < b.at:
			return 1
		}
		return 0
	})
	out := &pb.UnreadCommand{NotifTime: int64p(now)}
	for _, en := range entries[:min(len(entries), maxUnreadConvs)] {
		out.Convs = append(out.Convs, en.t)
	}
	return out, nil
}
