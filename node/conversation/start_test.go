package conversation

import (
	"context"
	"regexp"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

var (
	hex24 = regexp.MustCompile(`^[0-9a-f]{24}$`)
	hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
	iso   = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
)

func TestConversationStartNormal(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	resp := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry", "Tom", "Jerry"},
		Unique: proto.Bool(true), Attr: protocol.JSON(`{"name":"Tom & Jerry","attributes":{"foo":"bar"},"m":["x"]}`)}))
	if resp.GetCmd() != pb.CommandType_conv || resp.GetOp() != pb.OpType_started || resp.I != nil || resp.PeerId != nil {
		t.Fatalf("bad response header %v", resp)
	}
	cm := resp.GetConvMessage()
	if !hex24.MatchString(cm.GetCid()) || !iso.MatchString(cm.GetCdate()) || !hex32.MatchString(cm.GetUniqueId()) {
		t.Fatalf("bad started %v", cm)
	}
	if cm.Existing != nil || cm.TempConvTTL != nil {
		t.Fatalf("unexpected fields %v", cm)
	}
	got := h.d.take()
	want := []string{"Jerry/2:conv/joined", "Jerry/2:conv/members_joined", "Tom/1:conv/joined", "Tom/1:conv/members_joined"}
	if !slices.Equal(pushKeys(got), want) {
		t.Fatalf("pushes %v, want %v", pushKeys(got), want)
	}
	for _, p := range got {
		pc := p.cmd.GetConvMessage()
		if p.cmd.GetServerTs() == 0 || p.cmd.GetNotificationType() != 1 || p.cmd.GetService() != 2 || p.cmd.I != nil {
			t.Fatalf("push header %v", p.cmd)
		}
		if pc.GetInitBy() != "Tom" || pc.GetCid() != cm.GetCid() || !iso.MatchString(pc.GetUdate()) {
			t.Fatalf("push body %v", pc)
		}
		if p.cmd.GetOp() == pb.OpType_members_joined && !slices.Equal(pc.M, []string{"Jerry", "Tom"}) {
			t.Fatalf("members_joined m = %v", pc.M)
		}
		if p.cmd.GetOp() == pb.OpType_joined && len(pc.M) != 0 {
			t.Fatalf("joined carries m %v", pc.M)
		}
	}
	// Unique: the same member set returns the same conversation, no pushes.
	again := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, Attr: protocol.JSON(`{"name":"other"}`)}))
	if again.GetConvMessage().GetCid() != cm.GetCid() || !again.GetConvMessage().GetExisting() {
		t.Fatalf("unique start returned %v", again.GetConvMessage())
	}
	if n := len(h.d.take()); n != 0 {
		t.Fatalf("%d pushes for existing unique conversation", n)
	}
	// unique:false always creates.
	other := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, Unique: proto.Bool(false)}))
	if other.GetConvMessage().GetCid() == cm.GetCid() || other.GetConvMessage().UniqueId != nil {
		t.Fatalf("unique:false reused %v", other.GetConvMessage())
	}
	// Reserved columns are dropped; custom columns kept.
	r, _ := h.e.loadConv(testApp, cm.GetCid())
	if _, ok := r.Columns["m"]; ok || r.Columns["name"] != "Tom & Jerry" || r.Columns["attributes"] == nil {
		t.Fatalf("columns %v", r.Columns)
	}
	// Reliable notifications are replayable.
	ns, more, err := h.e.Notifications(context.Background(), testApp, "Jerry", 0, 10)
	if err != nil || more || len(ns) != 4 || ns[0].Op != pb.OpType_joined || ns[1].Op != pb.OpType_members_joined {
		t.Fatalf("notifications %v %v %v", ns, more, err)
	}
	if ns[0].ServerTs >= ns[1].ServerTs {
		t.Fatalf("serverTs not increasing")
	}
	js := ns[1].JSMap()
	if js["cmd"] != "conv" || js["op"] != "members_joined" || js["notificationType"] != 1 || js["cid"] != cm.GetCid() {
		t.Fatalf("JS map %v", js)
	}
	if sw := ns[1].SwiftMap(); sw["op"] != "members-joined" {
		t.Fatalf("Swift map %v", sw)
	}
	ns2, _, _ := h.e.Notifications(context.Background(), testApp, "Jerry", ns[0].ServerTs, 10)
	if len(ns2) != 3 || ns2[0].ServerTs != ns[1].ServerTs {
		t.Fatalf("start_ts is not an exclusive bound: %v", ns2)
	}
}

func TestConversationStartLimits(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	many := make([]string, 500)
	for i := range many {
		many[i] = "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	h.fail(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: many}), protocol.ErrConversationFull)
	h.fail(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: many[:10], TempConv: proto.Bool(true)}), protocol.ErrConversationFull)
	h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: many[:499]}))
}

func TestConversationStartTemporary(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	resp := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry", "Tom"}, TempConv: proto.Bool(true),
		TempConvTTL: proto.Int32(1), Unique: proto.Bool(true)}))
	cm := resp.GetConvMessage()
	if len(cm.GetCid()) < 6 || cm.GetCid()[:5] != "_tmp:" || cm.GetTempConvTTL() != 1 {
		t.Fatalf("temporary started %v", cm)
	}
	if got := pushKeys(h.d.take()); len(got) != 4 {
		t.Fatalf("temporary pushes %v", got)
	}
	again := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, TempConv: proto.Bool(true)}))
	if again.GetConvMessage().GetCid() != cm.GetCid() || again.GetConvMessage().GetTempConvTTL() != 1 {
		t.Fatalf("temporary not unique while alive: %v", again.GetConvMessage())
	}
	h.send(tom, cm.GetCid(), "hi")
	h.clock.Advance(1100 * time.Millisecond)
	h.fail(tom, directReq(cm.GetCid(), "late"), protocol.ErrConversationNotFound)
	h.fail(tom, convReq(pb.OpType_count, &pb.ConvCommand{Cid: cm.Cid}), protocol.ErrConversationNotFound)
	fresh := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, TempConv: proto.Bool(true)}))
	if fresh.GetConvMessage().GetCid() == cm.GetCid() || fresh.GetConvMessage().GetTempConvTTL() != 86400 {
		t.Fatalf("expired temporary conversation reused: %v", fresh.GetConvMessage())
	}
	capped := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Mary"}, TempConv: proto.Bool(true),
		TempConvTTL: proto.Int32(365 * 86400)}))
	if capped.GetConvMessage().GetTempConvTTL() != 30*86400 {
		t.Fatalf("ttl not capped: %v", capped.GetConvMessage())
	}
	// Sweeping removes the expired conversation and its index entries.
	if err := h.e.sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.e.loadConv(testApp, cm.GetCid()); r != nil {
		t.Fatalf("expired conversation survived the sweep")
	}
	if cids, _ := h.e.clientConvs(testApp, "Jerry"); slices.Contains(cids, cm.GetCid()) {
		t.Fatalf("expired conversation still indexed for Jerry")
	}
}

func TestConversationStartChatRoom(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	jerry := h.caller("Jerry", 2)
	resp := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Tom"}, Transient: proto.Bool(true),
		Unique: proto.Bool(true), TempConv: proto.Bool(false), Attr: protocol.JSON(`{"name":"room"}`)}))
	cid := resp.GetConvMessage().GetCid()
	again := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Tom"}, Transient: proto.Bool(true), Unique: proto.Bool(true)}))
	if again.GetConvMessage().GetCid() == cid {
		t.Fatalf("chat room creation must ignore unique")
	}
	if got := h.d.take(); len(got) != 0 {
		t.Fatalf("chat room creation pushed %v", pushKeys(got))
	}
	add := h.do(jerry, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Jerry"}}))
	if !slices.Equal(add.GetConvMessage().AllowedPids, []string{"Jerry"}) {
		t.Fatalf("join room %v", add.GetConvMessage())
	}
	count := h.do(tom, convReq(pb.OpType_count, &pb.ConvCommand{Cid: proto.String(cid)}))
	if count.GetOp() != pb.OpType_result || count.GetConvMessage().GetCount() != 2 {
		t.Fatalf("room count %v", count)
	}
	h.send(jerry, cid, "hello room")
	if got := pushKeys(h.d.take()); !slices.Equal(got, []string{"Tom/1:direct"}) {
		t.Fatalf("room message pushes %v", got)
	}
	h.d.disconnect("Jerry", 2)
	h.e.SessionGone(testApp, "Jerry", 2, true)
	count = h.do(tom, convReq(pb.OpType_count, &pb.ConvCommand{Cid: proto.String(cid)}))
	if count.GetConvMessage().GetCount() != 1 {
		t.Fatalf("room count after leave %v", count.GetConvMessage())
	}
	members := h.do(tom, convReq(pb.OpType_members, &pb.ConvCommand{Cid: proto.String(cid)}))
	if !slices.Equal(members.GetConvMessage().M, []string{"Tom"}) {
		t.Fatalf("room members %v", members.GetConvMessage())
	}
	// Anyone may read a chat room's history.
	logs := h.do(h.caller("Mary", 3), logsReq(&pb.LogsCommand{Cid: proto.String(cid)}))
	if len(logs.GetLogsMessage().GetLogs()) != 1 {
		t.Fatalf("room history %v", logs.GetLogsMessage())
	}
}
