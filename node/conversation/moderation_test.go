package conversation

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func TestConversationSilence(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	h.caller("Mary", 3)
	cid := h.start(tom, "Jerry", "Mary")
	h.d.take()
	shut := func(op pb.OpType, m ...string) *pb.GenericCommand {
		return convReq(op, &pb.ConvCommand{Cid: proto.String(cid), M: m})
	}
	resp := h.do(tom, shut(pb.OpType_add_shutup, "Jerry"))
	if resp.GetOp() != pb.OpType_shutup_added || !slices.Equal(resp.GetConvMessage().AllowedPids, []string{"Jerry"}) {
		t.Fatalf("add_shutup %v", resp)
	}
	want := []string{"Jerry/2:conv/members_shutuped", "Jerry/2:conv/shutuped", "Mary/3:conv/members_shutuped", "Tom/1:conv/members_shutuped"}
	if got := pushKeys(h.d.take()); !slices.Equal(got, want) {
		t.Fatalf("pushes %v", got)
	}
	h.fail(jerry, directReq(cid, "let me talk"), protocol.ErrSilenced)
	list := h.do(jerry, shut(pb.OpType_query_shutup))
	if list.GetOp() != pb.OpType_shutup_result || !slices.Equal(list.GetConvMessage().M, []string{"Jerry"}) || list.GetConvMessage().Next != nil {
		t.Fatalf("query_shutup %v", list)
	}
	check := h.do(jerry, shut(pb.OpType_check_shutup, "Jerry", "Mary"))
	if check.GetOp() != pb.OpType_check_result || !slices.Equal(check.GetConvMessage().M, []string{"Jerry"}) {
		t.Fatalf("check_shutup %v", check)
	}
	h.fail(jerry, shut(pb.OpType_remove_shutup, "Jerry"), protocol.ErrOperationUnauthorized)
	h.do(tom, shut(pb.OpType_remove_shutup, "Jerry"))
	want = []string{"Jerry/2:conv/members_unshutuped", "Jerry/2:conv/unshutuped", "Mary/3:conv/members_unshutuped", "Tom/1:conv/members_unshutuped"}
	if got := pushKeys(h.d.take()); !slices.Equal(got, want) {
		t.Fatalf("pushes %v", got)
	}
	h.send(jerry, cid, "thanks")
}

func TestConversationBlacklist(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	h.caller("Mary", 3)
	cid := h.start(tom, "Jerry", "Mary")
	h.d.take()
	bl := func(op pb.OpType, ids ...string) *pb.GenericCommand {
		return &pb.GenericCommand{Cmd: pb.CommandType_blacklist.Enum(), Op: op.Enum(), I: proto.Int32(6),
			BlacklistMessage: &pb.BlacklistCommand{SrcCid: proto.String(cid), ToPids: ids}}
	}
	resp := h.do(tom, bl(pb.OpType_block, "Jerry", "Tom"))
	bm := resp.GetBlacklistMessage()
	if resp.GetCmd() != pb.CommandType_blacklist || resp.GetOp() != pb.OpType_blocked || !slices.Equal(bm.AllowedPids, []string{"Jerry"}) ||
		len(bm.FailedPids) != 1 || !slices.Equal(bm.FailedPids[0].Pids, []string{"Tom"}) {
		t.Fatalf("block %v", resp)
	}
	want := []string{
		"Jerry/2:conv/blocked", "Jerry/2:conv/left", "Jerry/2:conv/members_blocked", "Jerry/2:conv/members_left",
		"Mary/3:conv/members_blocked", "Mary/3:conv/members_left", "Tom/1:conv/members_blocked", "Tom/1:conv/members_left",
	}
	if got := pushKeys(h.d.take()); !slices.Equal(got, want) {
		t.Fatalf("block pushes %v", got)
	}
	if r, _ := h.e.loadConv(testApp, cid); r.isMember("Jerry") || !r.isBlocked("Jerry") {
		t.Fatalf("record after block %v", r)
	}
	join := h.do(jerry, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Jerry"}}))
	if f := join.GetConvMessage().FailedPids; len(f) != 1 || f[0].GetCode() != 4548 || f[0].GetReason() != "BLOCKED_BY_CONV" {
		t.Fatalf("blocked join %v", join.GetConvMessage())
	}
	h.fail(jerry, bl(pb.OpType_unblock, "Jerry"), protocol.ErrOperationUnauthorized)
	q := h.do(tom, bl(pb.OpType_query))
	if q.GetOp() != pb.OpType_query_result || !slices.Equal(q.GetBlacklistMessage().BlockedPids, []string{"Jerry"}) {
		t.Fatalf("blacklist query %v", q)
	}
	c := h.do(tom, bl(pb.OpType_check_block, "Jerry", "Mary"))
	if c.GetOp() != pb.OpType_check_result || !slices.Equal(c.GetBlacklistMessage().BlockedPids, []string{"Jerry"}) {
		t.Fatalf("check_block %v", c)
	}
	h.d.take()
	h.do(tom, bl(pb.OpType_unblock, "Jerry"))
	want = []string{"Jerry/2:conv/members_unblocked", "Jerry/2:conv/unblocked", "Mary/3:conv/members_unblocked", "Tom/1:conv/members_unblocked"}
	if got := pushKeys(h.d.take()); !slices.Equal(got, want) {
		t.Fatalf("unblock pushes %v", got)
	}
	join = h.do(jerry, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Jerry"}}))
	if !slices.Equal(join.GetConvMessage().AllowedPids, []string{"Jerry"}) {
		t.Fatalf("join after unblock %v", join.GetConvMessage())
	}
}

// TestConversationSilencedManager: a manager silenced by the owner cannot
// lift its own silence (issue: remove_shutup on oneself returned success).
func TestConversationSilencedManager(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry", "Mary")
	h.do(tom, convReq(pb.OpType_member_info_update, &pb.ConvCommand{Cid: proto.String(cid), TargetClientId: proto.String("Jerry"),
		Info: &pb.ConvMemberInfo{Pid: proto.String("Jerry"), Role: proto.String(roleManager)}}))
	shut := func(op pb.OpType, m ...string) *pb.GenericCommand {
		return convReq(op, &pb.ConvCommand{Cid: proto.String(cid), M: m})
	}
	h.do(tom, shut(pb.OpType_add_shutup, "Jerry"))
	h.d.take()
	resp := h.do(jerry, shut(pb.OpType_remove_shutup, "Jerry"))
	f := resp.GetConvMessage().FailedPids
	if len(resp.GetConvMessage().AllowedPids) != 0 || len(f) != 1 || f[0].GetCode() != protocol.ErrOperationUnauthorized.Code ||
		!slices.Equal(f[0].Pids, []string{"Jerry"}) {
		t.Fatalf("self remove_shutup by a silenced manager: %v", resp)
	}
	if got := h.d.take(); len(got) != 0 {
		t.Fatalf("pushes after a refused remove_shutup: %v", pushKeys(got))
	}
	h.fail(jerry, directReq(cid, "still silenced?"), protocol.ErrSilenced)
	// The manager still moderates others, and the owner lifts the silence.
	h.do(jerry, shut(pb.OpType_add_shutup, "Mary"))
	h.do(jerry, shut(pb.OpType_remove_shutup, "Mary"))
	h.do(tom, shut(pb.OpType_remove_shutup, "Jerry"))
	h.send(jerry, cid, "thanks")
}
