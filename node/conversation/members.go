package conversation

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// failures groups per-id failures of a member operation by error code, for
// failedPids.
type failures struct {
	errs []*protocol.Error
}

func (f *failures) add(e *protocol.Error, id string) {
	for i, x := range f.errs {
		if x.Code == e.Code {
			f.errs[i] = x.WithPids(append(x.Pids, id)...)
			return
		}
	}
	f.errs = append(f.errs, e.WithPids(id))
}

func (f *failures) proto() []*pb.ErrorCommand {
	var out []*pb.ErrorCommand
	for _, e := range f.errs {
		out = append(out, e.Proto())
	}
	return out
}

// memberEvent records and returns the pushes of spec 3.6.3 for one
// operation: each affected client gets the singular op and the plural op
// {m = affected}; every other recipient gets the plural op. All are reliable
// notifications persisted in b; one frame (one serverTs) per op.
func (e *Engine) memberEvent(b *store.Batch, app, cid, initBy, udate string, single, plural pb.OpType, affected, others []string) []push {
	all := append(append([]string(nil), affected...), others...)
	one := e.reliable(b, app, affected, convPush(single, cid, initBy, udate, nil))
	many := e.reliable(b, app, all, convPush(plural, cid, initBy, udate, affected))
	return []push{{app: app, to: affected, cmd: one}, {app: app, to: all, cmd: many}}
}

// without returns set minus ids (both sorted), as a new slice.
func without(set, ids []string) []string {
	out := make([]string, 0, len(set))
	for _, id := range set {
		if _, ok := slices.BinarySearch(ids, id); !ok {
			out = append(out, id)
		}
	}
	return out
}

func isSelf(ids []string, self string) bool { return len(ids) == 1 && ids[0] == self }

// membershipTarget loads conversation cid for an add (join) or remove (quit)
// by c and applies the rules both share; the caller holds the conversation's
// stripe. Chat rooms take only the caller itself: entering or leaving the
// room's online set is answered here (resp). Temporary conversations have
// fixed members, and only members may change others.
func (e *Engine) membershipTarget(c Caller, cid string, ids []string, add bool) (r *convRecord, resp *pb.GenericCommand, err error) {
	r, err = e.loadLive(c.App, cid)
	if err != nil {
		return nil, nil, err
	}
	verb, roomVerb, op := "remove", "leave", pb.OpType_removed
	if add {
		verb, roomVerb, op = "add", "join", pb.OpType_added
	}
	switch r.Kind {
	case convTransient:
		if !isSelf(ids, c.ClientID) {
			return nil, nil, protocol.ErrNormalConversationRequired.WithDetail("chat room members can only %s themselves", roomVerb)
		}
		var err error
		if add {
			err = e.roomJoin(c.App, cid, c.ClientID)
		} else {
			err = e.roomLeave(c.App, cid, c.ClientID)
		}
		if err != nil {
			return nil, nil, err
		}
		return nil, convResponse(op, &pb.ConvCommand{Cid: strp(cid), AllowedPids: ids, Udate: isoDate(r.Updated)}), nil
	case convTemporary:
		return nil, nil, protocol.ErrNormalConversationRequired.WithDetail("temporary conversation members are fixed")
	}
	if !isSelf(ids, c.ClientID) && !c.Server() && !r.isMember(c.ClientID) {
		return nil, nil, protocol.ErrMembershipRequired.WithDetail("only members can %s others", verb)
	}
	return r, nil, nil
}

// convAdd implements conv/add (also join = add self), spec 3.6.
func (e *Engine) convAdd(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cid, ids := cm.GetCid(), sortedSet(cm.M)
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, resp, err := e.membershipTarget(c, cid, ids, true)
	if resp != nil || err != nil {
		return resp, err
	}
	var allowed, added []string
	var failed failures
	for _, id := range ids {
		switch {
		case r.isBlocked(id):
			failed.add(protocol.ErrBlockedByConv, id)
		case r.isMember(id):
			allowed = append(allowed, id)
		case len(r.Members)+len(added) >= e.cfg.MaxMembers:
			failed.add(protocol.ErrConversationFull, id)
		default:
			added = append(added, id)
			allowed = append(allowed, id)
		}
	}
	if len(added) > 0 {
		newest, err := e.newestMessage(c.App, cid)
		if err != nil {
			return nil, err
		}
		r.Members = setAdd(r.Members, added...)
		r.Updated = e.nowMs()
		b := e.st.NewBatch()
		e.putConv(b, c.App, r)
		for _, id := range added {
			e.indexClient(b, c.App, id, r, newest.ts(), r.Updated)
		}
		udate := protocol.ISODate(r.Updated)
		ps := e.memberEvent(b, c.App, cid, c.ClientID, udate, pb.OpType_joined, pb.OpType_members_joined,
			added, without(r.Members, added))
		if err := e.commitConv(st, c.App, cid, b); err != nil {
			return nil, internal("commit add", err)
		}
		e.emit(st, ps...)
	}
	return convResponse(pb.OpType_added, &pb.ConvCommand{Cid: strp(cid), AllowedPids: allowed,
		FailedPids: failed.proto(), Udate: isoDate(r.Updated)}), nil
}

// convRemove implements conv/remove (also quit = remove self), spec 3.6.
func (e *Engine) convRemove(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cid, ids := cm.GetCid(), sortedSet(cm.M)
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, resp, err := e.membershipTarget(c, cid, ids, false)
	if resp != nil || err != nil {
		return resp, err
	}
	rolesOn := len(r.Roles) > 0
	var allowed, removed []string
	var failed failures
	for _, id := range ids {
		switch {
		case id == r.Creator:
			failed.add(protocol.ErrConversationNeedOwner, id)
		case !r.isMember(id):
			allowed = append(allowed, id)
		case id != c.ClientID && rolesOn && !c.Server() && !r.canModerate(c.ClientID):
			failed.add(protocol.ErrOperationUnauthorized, id)
		default:
			removed = append(removed, id)
			allowed = append(allowed, id)
		}
	}
	if len(removed) > 0 {
		if err := e.removeMembersLocked(ctx, st, c, r, removed, nil); err != nil {
			return nil, err
		}
	}
	return convResponse(pb.OpType_removed, &pb.ConvCommand{Cid: strp(cid), AllowedPids: allowed,
		FailedPids: failed.proto(), Udate: isoDate(r.Updated)}), nil
}

// removeMembersLocked removes members, commits and queues left +
// members_left (spec 3.6.3). extra, if set, adds writes and pushes that must
// precede them in the same batch (blacklist). Caller holds st.mu.
func (e *Engine) removeMembersLocked(ctx context.Context, st *stripe, c Caller, r *convRecord, removed []string,
	extra func(b *store.Batch, udate string) []push) error {
	r.Members = setRemove(r.Members, removed...)
	r.Silenced = setRemove(r.Silenced, removed...)
	r.Muted = setRemove(r.Muted, removed...)
	for _, id := range removed {
		delete(r.Roles, id)
	}
	r.Updated = e.nowMs()
	udate := protocol.ISODate(r.Updated)
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	for _, id := range removed {
		e.unindexClient(b, c.App, id, r.ID)
	}
	var ps []push
	if extra != nil {
		ps = extra(b, udate)
	}
	ps = append(ps, e.memberEvent(b, c.App, r.ID, c.ClientID, udate, pb.OpType_left, pb.OpType_members_left,
		removed, r.Members)...)
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return internal("commit remove", err)
	}
	e.emit(st, ps...)
	return nil
}

// convCount implements conv/count: members, or online members of a chat room.
func (e *Engine) convCount(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	n := len(r.Members)
	if r.Kind == convTransient {
		ids, err := e.roomList(c.App, r.ID)
		if err != nil {
			return nil, err
		}
		n = len(e.d.Online(c.App, ids))
	}
	return convResponse(pb.OpType_result, &pb.ConvCommand{Cid: strp(r.ID), Count: int32p(int32(n))}), nil
}

// convIsMember implements conv/is_member (Swift): results = {"cid": bool}.
func (e *Engine) convIsMember(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cids := cm.Cids
	if len(cids) == 0 && cm.Cid != nil {
		cids = []string{cm.GetCid()}
	}
	out := map[string]bool{}
	for _, cid := range cids {
		r, err := e.loadConv(c.App, cid)
		if err != nil {
			return nil, err
		}
		switch {
		case r == nil || r.expired(e.nowMs()):
			out[cid] = false
		case r.Kind == convTransient:
			if out[cid], err = e.roomHas(c.App, cid, c.ClientID); err != nil {
				return nil, err
			}
		case r.Kind == convSystem:
			if out[cid], err = e.isSubscribed(c.App, cid, c.ClientID); err != nil {
				return nil, err
			}
		default:
			out[cid] = r.isMember(c.ClientID)
		}
	}
	data, _ := json.Marshal(out)
	return convResponse(pb.OpType_is_member, &pb.ConvCommand{Results: protocol.JSON(string(data))}), nil
}

// maxRoomMembersList caps conv/members for chat rooms (Swift allows <= 50).
const maxRoomMembersList = 50

// convMembers implements conv/members: a chat room's online members (at
// most 50), or a conversation's members.
func (e *Engine) convMembers(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	m := r.Members
	if r.Kind == convTransient {
		ids, err := e.roomList(c.App, r.ID)
		if err != nil {
			return nil, err
		}
		m = e.d.Online(c.App, ids)
		limit := int(cm.GetLimit())
		if limit <= 0 || limit > maxRoomMembersList {
			limit = maxRoomMembersList
		}
		m = m[:min(len(m), limit)]
	}
	return convResponse(pb.OpType_members, &pb.ConvCommand{Cid: strp(r.ID), M: m}), nil
}

// convMemberInfoUpdate implements conv/member_info_update (spec 3.14.2).
func (e *Engine) convMemberInfoUpdate(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	target := cm.GetTargetClientId()
	if target == "" {
		target = cm.GetInfo().GetPid()
	}
	role := cm.GetInfo().GetRole()
	st := e.convStripe(c.App, cm.GetCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	switch {
	case r.Kind != convNormal:
		return nil, protocol.ErrNormalConversationRequired
	case !c.Server() && !r.isMember(c.ClientID):
		return nil, protocol.ErrMembershipRequired
	case target == c.ClientID || target == r.Creator || (!c.Server() && !r.canModerate(c.ClientID)):
		return nil, protocol.ErrOperationUnauthorized
	case role != roleManager && role != roleMember:
		return nil, protocol.ErrUnknownConversationRole.WithDetail("role %q", role)
	case !r.isMember(target):
		return nil, protocol.ErrMembershipRequired.WithDetail("%q is not a member", target)
	}
	if r.Roles == nil {
		r.Roles = map[string]string{}
	}
	r.Roles[target] = role
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	p := newPush(pb.CommandType_conv, pb.OpType_member_info_changed.Enum())
	p.ConvMessage = &pb.ConvCommand{Cid: strp(r.ID), InitBy: strp(c.ClientID),
		Info: &pb.ConvMemberInfo{Pid: strp(target), Role: strp(role)}}
	e.reliable(b, c.App, r.Members, p)
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return nil, internal("commit member info", err)
	}
	e.emit(st, push{app: c.App, to: r.Members, except: c.Session, cmd: p})
	return convResponse(pb.OpType_member_info_updated, &pb.ConvCommand{Cid: strp(r.ID)}), nil
}

// MemberInfo is one _ConversationMemberInfo row (spec 1.9.4).
type MemberInfo struct {
	Cid      string `json:"cid"`
	ClientID string `json:"clientId"`
	Role     string `json:"role"`
}

// ConversationMembers returns the members with an explicitly assigned role,
// sorted by client id (the SDK treats the creator as Owner and everybody
// else as Member by default). An unknown conversation yields 4303. Safe for
// concurrent use.
func (e *Engine) ConversationMembers(_ context.Context, app, cid string) ([]MemberInfo, error) {
	r, err := e.loadLive(app, cid)
	if err != nil {
		return nil, err
	}
	out := make([]MemberInfo, 0, len(r.Roles))
	for id, role := range r.Roles {
		out = append(out, MemberInfo{Cid: cid, ClientID: id, Role: role})
	}
	slices.SortFunc(out, func(a, b MemberInfo) int { return compareStrings(a.ClientID, b.ClientID) })
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
