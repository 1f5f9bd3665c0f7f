package conversation

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

func TestConversationHistoryWindows(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	contents := []string{
		`{"_lctype":-1,"_lctext":"one"}`,
		`{"_lctype":-2,"_lcfile":{"url":"http://x/y.png"}}`,
		`{"_lctype":-1,"_lctext":"three"}`,
		`hello`,
		`{"_lctype":-1,"_lctext":"five"}`,
	}
	var m [6]string // 1-based
	var ts [6]int64
	for i, c := range contents {
		h.clock.Advance(time.Second)
		m[i+1], ts[i+1] = h.send(tom, cid, c)
	}
	p := proto.Int32
	i64 := proto.Int64
	s := proto.String
	yes := proto.Bool(true)
	newer := pb.LogsCommand_NEW.Enum()
	y2099 := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	tests := []struct {
		name string
		req  *pb.LogsCommand
		want []int
	}{
		{"default: newest first page, ascending output", &pb.LogsCommand{}, []int{1, 2, 3, 4, 5}},
		{"l limits to the newest", &pb.LogsCommand{L: p(2)}, []int{4, 5}},
		{"limit preferred over l", &pb.LogsCommand{L: p(1), Limit: p(3)}, []int{3, 4, 5}},
		{"l 0 is empty", &pb.LogsCommand{L: p(0)}, nil},
		{"limit clamped to 100", &pb.LogsCommand{Limit: p(1000)}, []int{1, 2, 3, 4, 5}},
		{"docs: (t3,m3) to (t1,m1)", &pb.LogsCommand{T: i64(ts[3]), Mid: s(m[3]), Tt: i64(ts[1]), Tmid: s(m[1])}, []int{2}},
		{"docs: + tIncluded", &pb.LogsCommand{T: i64(ts[3]), Mid: s(m[3]), Tt: i64(ts[1]), Tmid: s(m[1]), TIncluded: yes}, []int{2, 3}},
		{"docs: + ttIncluded", &pb.LogsCommand{T: i64(ts[3]), Mid: s(m[3]), Tt: i64(ts[1]), Tmid: s(m[1]), TtIncluded: yes}, []int{1, 2}},
		{"docs: NEW (t1,m1) to (t3,m3)", &pb.LogsCommand{T: i64(ts[1]), Mid: s(m[1]), Tt: i64(ts[3]), Tmid: s(m[3]), Direction: newer}, []int{2}},
		{"NEW both inclusive", &pb.LogsCommand{T: i64(ts[1]), Mid: s(m[1]), Tt: i64(ts[3]), Tmid: s(m[3]), Direction: newer, TIncluded: yes, TtIncluded: yes}, []int{1, 2, 3}},
		{"NEW takes the oldest", &pb.LogsCommand{Direction: newer, L: p(2)}, []int{1, 2}},
		{"NEW from t without mid", &pb.LogsCommand{T: i64(ts[2]), Direction: newer, L: p(2)}, []int{3, 4}},
		{"OLD from t without mid", &pb.LogsCommand{T: i64(ts[4]), L: p(2)}, []int{2, 3}},
		{"OLD from t inclusive", &pb.LogsCommand{T: i64(ts[4]), TIncluded: yes, L: p(2)}, []int{3, 4}},
		{"page 2 anchored on page 1's oldest", &pb.LogsCommand{T: i64(ts[4]), Mid: s(m[4]), L: p(2)}, []int{2, 3}},
		{"startTime 1 ms", &pb.LogsCommand{T: i64(1)}, nil},
		{"endTime 2099 without direction", &pb.LogsCommand{Tt: i64(y2099)}, nil},
		{"startTime 2099 NEW", &pb.LogsCommand{T: i64(y2099), Direction: newer}, nil},
		{"lctype text", &pb.LogsCommand{Lctype: p(-1)}, []int{1, 3, 5}},
		{"lctype before limit", &pb.LogsCommand{Lctype: p(-1), L: p(2)}, []int{3, 5}},
		{"lctype image", &pb.LogsCommand{Lctype: p(-2)}, []int{2}},
		{"lctype unknown", &pb.LogsCommand{Lctype: p(1000)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Cid = proto.String(cid)
			resp := h.do(tom, logsReq(tc.req))
			if resp.GetCmd() != pb.CommandType_logs || resp.Op != nil || resp.LogsMessage == nil {
				t.Fatalf("response %v", resp)
			}
			var got []int
			for _, it := range resp.GetLogsMessage().GetLogs() {
				got = append(got, slices.Index(m[:], it.GetMsgId()))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	item := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), L: p(1)})).GetLogsMessage().GetLogs()[0]
	if item.GetFrom() != "Tom" || item.GetTimestamp() != ts[5] || item.GetData() != contents[4] || item.Bin != nil ||
		item.AckAt != nil || item.ReadAt != nil || item.PatchTimestamp != nil || item.MentionAll != nil {
		t.Fatalf("item %v", item)
	}
	h.fail(h.caller("Eve", 2), logsReq(&pb.LogsCommand{Cid: proto.String(cid)}), protocol.ErrConversationLogRejected)
	h.fail(tom, logsReq(&pb.LogsCommand{Cid: proto.String("5a5d7433c3422b31ed845e76")}), protocol.ErrConversationNotFound)
}

func TestConversationRetention(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	old, _ := h.send(tom, cid, "old")
	h.clock.Advance(100 * 24 * time.Hour)
	h.send(tom, cid, "middle")
	h.clock.Advance(100 * 24 * time.Hour)
	h.send(tom, cid, "new")
	// Keys of other owners (no app, or not even our codec) must not trip the sweeper.
	b := h.st.NewBatch()
	b.Set(store.NewKey(3, "", store.FamMeta).Str("x").Bytes(), []byte("v"))
	b.Set([]byte{0, 5, 0xff, 0xfe}, []byte("junk"))
	if err := h.st.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := h.e.sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if len(logs) != 2 || logs[0].GetData() != "middle" {
		t.Fatalf("after retention %v", logs)
	}
	if m, _ := h.e.lookupMessage(testApp, cid, old); m != nil {
		t.Fatalf("id index of a deleted message survived")
	}
	// Old notifications are swept too (30 days).
	if ns, _, _ := h.e.Notifications(t.Context(), testApp, "Jerry", 0, 10); len(ns) != 0 {
		t.Fatalf("notifications survived: %d", len(ns))
	}
}
