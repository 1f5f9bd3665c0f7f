package conversation

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

type sysSink struct {
	mu  sync.Mutex
	got []SysMessage
}

func (s *sysSink) SysMessage(m SysMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, m)
}

func adminDirect(cid, msg string, to ...string) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(),
		DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg), ToPeerIds: to}}
}

func queryDocs(t *testing.T, resp *pb.GenericCommand) []map[string]any {
	t.Helper()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetResults().GetData()), &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestSystemConversation(t *testing.T) {
	h := newHarness(t)
	sink := &sysSink{}
	h.e.cfg.SysMessages = sink
	admin := SystemCaller(testApp, "Bot")
	tom, jerry, mary := h.caller("Tom", 1), h.caller("Jerry", 2), h.caller("Mary", 3)

	cid := h.do(admin, convReq(pb.OpType_start, &pb.ConvCommand{Unique: proto.Bool(false),
		Attr: protocol.JSON(`{"name":"Notices"}`)})).GetConvMessage().GetCid()
	h.fail(admin, convReq(pb.OpType_start, &pb.ConvCommand{Attr: protocol.JSON(`{"sys":false}`)}), protocol.ErrConversationUpdateFailed)

	// Any client finds it, unsubscribed: sys, joined false, no members.
	q := convReq(pb.OpType_query, &pb.ConvCommand{Where: protocol.JSON(`{"sys":true}`)})
	docs := queryDocs(t, h.do(tom, q))
	if len(docs) != 1 || docs[0]["objectId"] != cid || docs[0]["sys"] != true || docs[0]["joined"] != false ||
		docs[0]["name"] != "Notices" || docs[0]["tr"] != false {
		t.Fatalf("query %v", docs)
	}

	// Clients subscribe only themselves; no pushes.
	sub := func(c Caller, op pb.OpType, m ...string) *pb.GenericCommand {
		return convReq(op, &pb.ConvCommand{Cid: proto.String(cid), M: m})
	}
	h.fail(tom, sub(tom, pb.OpType_add, "Jerry"), protocol.ErrNormalConversationRequired)
	for _, c := range []Caller{tom, jerry} {
		resp := h.do(c, sub(c, pb.OpType_add, c.ClientID))
		if resp.GetOp() != pb.OpType_added || !slices.Equal(resp.GetConvMessage().AllowedPids, []string{c.ClientID}) ||
			resp.GetConvMessage().GetUdate() == "" {
			t.Fatalf("subscribe %v", resp)
		}
	}
	if got := h.d.take(); len(got) != 0 {
		t.Fatalf("subscribe pushed %v", pushKeys(got))
	}
	docs = queryDocs(t, h.do(tom, q))
	if docs[0]["joined"] != true || docs[0]["joinedAt"] == nil || docs[0]["muted"] != false {
		t.Fatalf("subscribed doc %v", docs[0])
	}
	if n := h.do(admin, convReq(pb.OpType_count, &pb.ConvCommand{Cid: proto.String(cid)})).GetConvMessage().GetCount(); n != 2 {
		t.Fatalf("count %d", n)
	}
	list := h.do(admin, convReq(pb.OpType_members, &pb.ConvCommand{Cid: proto.String(cid), Limit: proto.Int32(1)}))
	if d := list.GetConvMessage().GetResults().GetData(); !json.Valid([]byte(d)) || !slices.Contains([]string{`[{"conv_id":"` + cid + `","subscriber":"Jerry","timestamp":1700000000000}]`}, d) {
		t.Fatalf("subscribers %s", d)
	}

	// A broadcast reaches every subscriber (stored once); a message to
	// chosen clients reaches them, subscribed or not, and only them.
	bmid := h.do(admin, adminDirect(cid, "hello all")).GetAckMessage().GetUid()
	if got := pushKeys(h.d.take()); !slices.Equal(got, []string{"Jerry/2:direct", "Tom/1:direct"}) {
		t.Fatalf("broadcast pushes %v", got)
	}
	h.do(admin, adminDirect(cid, "just for Mary", "Mary"))
	got := h.d.take()
	if keys := pushKeys(got); !slices.Equal(keys, []string{"Mary/3:direct"}) || got[0].cmd.GetDirectMessage().GetFromPeerId() != "Bot" ||
		got[0].cmd.GetDirectMessage().GetConvType() != convSystem {
		t.Fatalf("chosen pushes %v", got)
	}
	logs := func(c Caller) []string {
		var out []string
		for _, l := range h.do(c, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs() {
			out = append(out, l.GetData())
		}
		return out
	}
	if got := logs(mary); !slices.Equal(got, []string{"hello all", "just for Mary"}) {
		t.Fatalf("Mary's history %v", got)
	}
	if got := logs(tom); !slices.Equal(got, []string{"hello all"}) {
		t.Fatalf("Tom's history %v", got)
	}
	// Jerry goes offline, misses a broadcast and sees it as unread.
	h.d.disconnect("Jerry", 2)
	h.do(admin, adminDirect(cid, "while you were away"))
	h.do(admin, adminDirect(cid, "Mary only again", "Mary"))
	u, err := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0)
	if err != nil || len(u.GetConvs()) != 1 || u.Convs[0].GetUnread() != 2 || u.Convs[0].GetData() != "while you were away" ||
		u.Convs[0].GetConvType() != convSystem {
		t.Fatalf("unread %v %v", u, err)
	}
	_ = bmid
	// read clears it (subscribers keep a read pointer); is_member reports
	// the subscription (Swift's checkSubscription).
	h.d.connect("Jerry", 2)
	h.do(jerry, &pb.GenericCommand{Cmd: pb.CommandType_read.Enum(), ReadMessage: &pb.ReadCommand{Cid: proto.String(cid)}})
	if u, err := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0); err != nil || len(u.GetConvs()) != 0 {
		t.Fatalf("unread after read %v %v", u, err)
	}
	im := h.do(jerry, convReq(pb.OpType_is_member, &pb.ConvCommand{Cids: []string{cid}}))
	if d := im.GetConvMessage().GetResults().GetData(); d != `{"`+cid+`":true}` {
		t.Fatalf("is_member %s", d)
	}

	// Unsubscribed clients get no broadcasts.
	h.do(tom, sub(tom, pb.OpType_remove, "Tom"))
	h.d.take()
	h.do(admin, adminDirect(cid, "after Tom left"))
	if got := pushKeys(h.d.take()); !slices.Equal(got, []string{"Jerry/2:direct"}) {
		t.Fatalf("pushes after Tom unsubscribed %v", got)
	}

	// Clients' messages go to the hook only.
	ack := h.do(jerry, directReq(cid, "help"))
	if ack.GetAckMessage().GetUid() == "" || len(h.d.take()) != 0 {
		t.Fatalf("upstream ack %v", ack)
	}
	if len(sink.got) != 1 || sink.got[0].From != "Jerry" || sink.got[0].Data != "help" || sink.got[0].ConvID != cid {
		t.Fatalf("hook got %+v", sink.got)
	}

	// Not client operations; server operations on a normal conversation
	// answer 4313.
	h.fail(jerry, convReq(pb.OpType_update, &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(`{"name":"x"}`)}),
		protocol.ErrNormalConversationRequired)
	normal := h.start(tom, "Jerry")
	h.fail(admin, adminDirect(normal, "x"), protocol.ErrSystemConversationRequired)
	h.fail(SystemCaller(testApp, "x"), convReq(pb.OpType_close, &pb.ConvCommand{Cid: proto.String(normal)}), protocol.ErrSystemConversationRequired)

	h.do(admin, convReq(pb.OpType_update, &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(`{"name":"News","icon":null}`)}))
	if docs = queryDocs(t, h.do(tom, q)); docs[0]["name"] != "News" {
		t.Fatalf("after update %v", docs)
	}
	h.do(admin, convReq(pb.OpType_close, &pb.ConvCommand{Cid: proto.String(cid)}))
	if docs = queryDocs(t, h.do(tom, q)); len(docs) != 0 {
		t.Fatalf("after delete %v", docs)
	}
	if cids, _ := h.e.clientConvs(testApp, "Jerry"); slices.Contains(cids, cid) {
		t.Fatalf("Jerry's index keeps the deleted conversation")
	}
}
