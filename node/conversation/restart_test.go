package conversation

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

func TestConversationRestartPersistence(t *testing.T) {
	clock := &testClock{now: time.UnixMilli(1_700_000_000_000)}
	h := openHarness(t, vfs.Default, t.TempDir(), newTestDeliverer(), clock)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	h.do(tom, updateReq(cid, `{"attr.x":1}`))
	mid, ts := h.send(tom, cid, "durable")

	h = h.reopen()
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if len(logs) != 1 || logs[0].GetMsgId() != mid || logs[0].GetTimestamp() != ts {
		t.Fatalf("history after restart %v", logs)
	}
	// The clock has not moved: the next timestamp must still be larger.
	if _, next := h.send(tom, cid, "after restart"); next <= ts {
		t.Fatalf("timestamp %d after restart not above %d", next, ts)
	}
	docs := h.query(h.caller("Jerry", 2), queryReq(`{}`, "", nil, nil, 0))
	if len(docs) != 1 || docs[0]["objectId"] != cid || docs[0]["attr"].(map[string]any)["x"] != 1.0 {
		t.Fatalf("query after restart %v", docs)
	}
	if u, _ := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0); u == nil || u.Convs[0].GetUnread() != 2 {
		t.Fatalf("unread after restart %v", u)
	}
	if ns, _, _ := h.e.Notifications(t.Context(), testApp, "Jerry", 0, 0); len(ns) != 3 {
		t.Fatalf("notifications after restart %d", len(ns))
	}
	again := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}}))
	if again.GetConvMessage().GetCid() != cid {
		t.Fatalf("unique index lost on restart")
	}
}

func TestConversationStartStop(t *testing.T) {
	h := newHarness(t)
	h.e.Start(t.Context())
	h.e.Stop()
}
