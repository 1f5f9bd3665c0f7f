package conversation

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestConversationMembershipTable walks the seed guide's event table (Tom and
// Jerry in a conversation; Mary and William around) and checks every push.
func TestConversationMembershipTable(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	_, william := h.caller("Mary", 3), h.caller("William", 4)
	cid := h.start(tom, "Jerry")
	h.d.take()
	steps := []struct {
		name    string
		by      Caller
		op      pb.OpType
		m       []string
		allowed []string
		pushes  []string
	}{
		{"Tom adds Mary", tom, pb.OpType_add, []string{"Mary"}, []string{"Mary"}, []string{
			"Jerry/2:conv/members_joined", "Mary/3:conv/joined", "Mary/3:conv/members_joined", "Tom/1:conv/members_joined"}},
		{"Tom adds Mary again", tom, pb.OpType_add, []string{"Mary"}, []string{"Mary"}, nil},
		{"Tom removes Mary", tom, pb.OpType_remove, []string{"Mary"}, []string{"Mary"}, []string{
			"Jerry/2:conv/members_left", "Mary/3:conv/left", "Mary/3:conv/members_left", "Tom/1:conv/members_left"}},
		{"Tom removes a non-member", tom, pb.OpType_remove, []string{"Mary"}, []string{"Mary"}, nil},
		{"William joins", william, pb.OpType_add, []string{"William"}, []string{"William"}, []string{
			"Jerry/2:conv/members_joined", "Tom/1:conv/members_joined", "William/4:conv/joined", "William/4:conv/members_joined"}},
		{"Jerry quits", jerry, pb.OpType_remove, []string{"Jerry"}, []string{"Jerry"}, []string{
			"Jerry/2:conv/left", "Jerry/2:conv/members_left", "Tom/1:conv/members_left", "William/4:conv/members_left"}},
	}
	for _, s := range steps {
		resp := h.do(s.by, convReq(s.op, &pb.ConvCommand{Cid: proto.String(cid), M: s.m}))
		cm := resp.GetConvMessage()
		wantOp := pb.OpType_added
		if s.op == pb.OpType_remove {
			wantOp = pb.OpType_removed
		}
		if resp.GetOp() != wantOp || !slices.Equal(cm.AllowedPids, s.allowed) || len(cm.FailedPids) != 0 || !iso.MatchString(cm.GetUdate()) {
			t.Fatalf("%s: response %v", s.name, resp)
		}
		got := h.d.take()
		if !slices.Equal(pushKeys(got), s.pushes) {
			t.Fatalf("%s: pushes %v, want %v", s.name, pushKeys(got), s.pushes)
		}
		for _, p := range got {
			pc := p.cmd.GetConvMessage()
			if pc.GetInitBy() != s.by.ClientID || pc.GetUdate() != cm.GetUdate() || p.cmd.GetNotificationType() != 1 {
				t.Fatalf("%s: push %v", s.name, p.cmd)
			}
			plural := p.cmd.GetOp() == pb.OpType_members_joined || p.cmd.GetOp() == pb.OpType_members_left
			if plural != (len(pc.M) > 0) || (plural && !slices.Equal(pc.M, s.m)) {
				t.Fatalf("%s: push m %v", s.name, p.cmd)
			}
		}
	}
	r, _ := h.e.loadConv(testApp, cid)
	if !slices.Equal(r.Members, []string{"Tom", "William"}) {
		t.Fatalf("members %v", r.Members)
	}
	if cids, _ := h.e.clientConvs(testApp, "Jerry"); len(cids) != 0 {
		t.Fatalf("Jerry still indexed: %v", cids)
	}
}

func TestConversationRemoveOwner(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry", "Mary")
	h.d.take()
	resp := h.do(tom, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Tom", "Mary"}}))
	cm := resp.GetConvMessage()
	if !slices.Equal(cm.AllowedPids, []string{"Mary"}) || len(cm.FailedPids) != 1 {
		t.Fatalf("remove owner %v", cm)
	}
	f := cm.FailedPids[0]
	if f.GetCode() != 4324 || f.GetReason() != "CONVERSATION_NEED_OWNER" || !slices.Equal(f.Pids, []string{"Tom"}) {
		t.Fatalf("failedPids %v", f)
	}
	quit := h.do(tom, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Tom"}}))
	if len(quit.GetConvMessage().FailedPids) != 1 || len(quit.GetConvMessage().AllowedPids) != 0 {
		t.Fatalf("owner quit %v", quit.GetConvMessage())
	}
	h.fail(jerry, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String("5a5d7433c3422b31ed845e76"), M: []string{"Jerry"}}),
		protocol.ErrConversationNotFound)
	h.fail(h.caller("Eve", 5), convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Bob"}}),
		protocol.ErrMembershipRequired)
	count := h.do(jerry, convReq(pb.OpType_count, &pb.ConvCommand{Cid: proto.String(cid)}))
	if count.GetConvMessage().GetCount() != 2 {
		t.Fatalf("count %v", count.GetConvMessage())
	}
	isMember := h.do(jerry, convReq(pb.OpType_is_member, &pb.ConvCommand{Cids: []string{cid, "nope"}}))
	if isMember.GetConvMessage().GetResults().GetData() != `{"`+cid+`":true,"nope":false}` {
		t.Fatalf("is_member %v", isMember.GetConvMessage())
	}
}

func TestConversationMemberRoles(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	h.caller("Mary", 3)
	cid := h.start(tom, "Jerry", "Mary")
	h.d.take()
	upd := func(role string) *pb.GenericCommand {
		return convReq(pb.OpType_member_info_update, &pb.ConvCommand{Cid: proto.String(cid), TargetClientId: proto.String("Jerry"),
			Info: &pb.ConvMemberInfo{Pid: proto.String("Jerry"), Role: proto.String(role)}})
	}
	h.fail(jerry, upd("Manager"), protocol.ErrOperationUnauthorized)
	h.fail(tom, upd("Owner"), protocol.ErrUnknownConversationRole)
	resp := h.do(tom, upd("Manager"))
	if resp.GetOp() != pb.OpType_member_info_updated {
		t.Fatalf("response %v", resp)
	}
	got := h.d.take()
	if want := []string{"Jerry/2:conv/member_info_changed", "Mary/3:conv/member_info_changed"}; !slices.Equal(pushKeys(got), want) {
		t.Fatalf("pushes %v", pushKeys(got))
	}
	if info := got[0].cmd.GetConvMessage().GetInfo(); info.GetPid() != "Jerry" || info.GetRole() != "Manager" {
		t.Fatalf("info %v", info)
	}
	infos, err := h.e.ConversationMembers(t.Context(), testApp, cid)
	if err != nil || len(infos) != 1 || infos[0] != (MemberInfo{Cid: cid, ClientID: "Jerry", Role: "Manager"}) {
		t.Fatalf("member infos %v %v", infos, err)
	}
	// A manager may now remove members; a plain member may not once roles are in use.
	mary := Caller{App: testApp, ClientID: "Mary", Session: 3}
	rm := h.do(mary, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Jerry"}}))
	if f := rm.GetConvMessage().FailedPids; len(f) != 1 || f[0].GetCode() != 4320 {
		t.Fatalf("member removing manager %v", rm.GetConvMessage())
	}
	rm = h.do(jerry, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Mary"}}))
	if !slices.Equal(rm.GetConvMessage().AllowedPids, []string{"Mary"}) {
		t.Fatalf("manager removing %v", rm.GetConvMessage())
	}
}
