package conversation

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func patchReq(item *pb.PatchItem) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_modify.Enum(), I: proto.Int32(5),
		PatchMessage: &pb.PatchCommand{Patches: []*pb.PatchItem{item}}}
}

func TestConversationPatch(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	h.caller("Tom", 5)
	cid := h.start(tom, "Jerry")
	mid, ts := h.send(tom, cid, `{"_lctype":-1,"_lctext":"typo"}`)
	before := h.clock.Now().UnixMilli()
	h.d.take()

	h.fail(jerry, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Data: proto.String("x")}),
		protocol.ErrMessageOwnershipRequired)
	h.fail(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String("nope"), Timestamp: proto.Int64(ts)}),
		protocol.ErrMessageNotFound)

	edit := h.do(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts),
		Data: proto.String(`{"_lctype":-1,"_lctext":"fixed"}`), MentionAll: proto.Bool(false)}))
	pt := edit.GetPatchMessage().GetLastPatchTime()
	if edit.GetCmd() != pb.CommandType_patch || edit.GetOp() != pb.OpType_modified || pt == ts {
		t.Fatalf("modified %v", edit)
	}
	got := h.d.take()
	if want := []string{"Jerry/2:patch/modify", "Tom/5:patch/modify"}; !slices.Equal(pushKeys(got), want) {
		t.Fatalf("pushes %v", pushKeys(got))
	}
	item := got[0].cmd.GetPatchMessage().GetPatches()[0]
	if item.GetMid() != mid || item.GetTimestamp() != ts || item.GetPatchTimestamp() != pt || item.GetFrom() != "Tom" ||
		item.GetData() != `{"_lctype":-1,"_lctext":"fixed"}` || item.Recall != nil || got[0].cmd.GetPatchMessage().GetLastPatchTime() != pt {
		t.Fatalf("patch item %v", item)
	}

	h.clock.Advance(time.Second)
	recall := h.do(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Recall: proto.Bool(true)}))
	rpt := recall.GetPatchMessage().GetLastPatchTime()
	got = h.d.take()
	if it := got[0].cmd.GetPatchMessage().GetPatches()[0]; !it.GetRecall() || it.GetData() != recalledContent {
		t.Fatalf("recall push %v", it)
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if logs[0].GetData() != recalledContent || logs[0].GetPatchTimestamp() != rpt {
		t.Fatalf("history after recall %v", logs)
	}
	typed := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), Lctype: proto.Int32(-127)})).GetLogsMessage().GetLogs()
	if len(typed) != 1 {
		t.Fatalf("recalled type filter %v", typed)
	}
	q := h.query(jerry, queryReq(`{"objectId":"`+cid+`"}`, "", nil, nil, 2))
	if q[0]["msg"] != recalledContent || q[0]["patch_timestamp"] != float64(rpt) {
		t.Fatalf("last message after recall %v", q[0])
	}
	ps, err := h.e.PatchesSince(t.Context(), testApp, "Jerry", before)
	if err != nil || len(ps.GetPatches()) != 2 || ps.GetLastPatchTime() != rpt {
		t.Fatalf("patches since %v %v", ps, err)
	}
	if ps, _ := h.e.PatchesSince(t.Context(), testApp, "Jerry", rpt); ps != nil {
		t.Fatalf("patches since the newest %v", ps)
	}
}

// A node whose lease ran out assigns no patch timestamp and stores
// nothing: the patch fails with ErrNotCoordinator (the cluster runs it
// again at the coordinator).
func TestConversationPatchNeedsTheLease(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	mid, ts := h.send(tom, cid, "typo")
	req := patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Data: proto.String("fixed")})
	h.lostLease.Store(true)
	if _, err := h.e.Handle(context.Background(), tom, req); !errors.Is(err, ErrNotCoordinator) {
		t.Fatalf("patch without the lease: %v, want ErrNotCoordinator", err)
	}
	h.lostLease.Store(false)
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.PatchTs != 0 || m.Data != "typo" {
		t.Fatalf("message after a refused patch = %+v, %v; want unpatched", m, err)
	}
	h.do(tom, req)
}

// TestCommandIdempotent: sends with a de-duplication token, acks and reads
// may run twice; sends without a token, transient sends and changes may not.
func TestCommandIdempotent(t *testing.T) {
	h := newHarness(t)
	direct := func(dt string, transient bool) *pb.GenericCommand {
		return &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{
			Cid: proto.String("c"), Msg: proto.String("m"), Dt: proto.String(dt), Transient: proto.Bool(transient)}}
	}
	conv := func(op pb.OpType) *pb.GenericCommand {
		return &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: &pb.ConvCommand{Cid: proto.String("c")}}
	}
	for _, tt := range []struct {
		name string
		req  *pb.GenericCommand
		want bool
	}{
		{"send with dt", direct("dt-1", false), true},
		{"send without dt", direct("", false), false},
		{"transient send", direct("dt-1", true), false},
		{"receiver ack", &pb.GenericCommand{Cmd: pb.CommandType_ack.Enum(), AckMessage: &pb.AckCommand{Cid: proto.String("c")}}, true},
		{"read", &pb.GenericCommand{Cmd: pb.CommandType_read.Enum()}, true},
		{"logs", logsReq(&pb.LogsCommand{Cid: proto.String("c")}), true},
		{"conv/query", conv(pb.OpType_query), true},
		{"conv/members", conv(pb.OpType_members), true},
		{"conv/add", conv(pb.OpType_add), false},
		{"conv/start", conv(pb.OpType_start), false},
		{"patch", patchReq(&pb.PatchItem{Cid: proto.String("c")}), false},
	} {
		if got := h.e.Idempotent(tt.req); got != tt.want {
			t.Errorf("%s: idempotent %v, want %v", tt.name, got, tt.want)
		}
	}
}
