package conversation

import (
	"context"
	"strconv"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// List paging for query_shutup and blacklist/query (Swift allows 1-100).
const (
	defaultListLimit = 10
	maxListLimit     = 100
)

// moderationTarget loads a conversation for a silence/blacklist change by a
// moderator (owner or manager). Caller holds the conversation's stripe.
func (e *Engine) moderationTarget(c Caller, cid string) (*convRecord, error) {
	r, err := e.loadLive(c.App, cid)
	if err != nil {
		return nil, err
	}
	if r.Kind != convNormal {
		return nil, protocol.ErrNormalConversationRequired
	}
	if !c.Server() && !r.canModerate(c.ClientID) {
		return nil, protocol.ErrOperationUnauthorized
	}
	return r, nil
}

// convShutup implements conv/add_shutup and conv/remove_shutup (spec 3.14.3).
func (e *Engine) convShutup(ctx context.Context, c Caller, cm *pb.ConvCommand, add bool) (*pb.GenericCommand, error) {
	st := e.convStripe(c.App, cm.GetCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.moderationTarget(c, cm.GetCid())
	if err != nil {
		return nil, err
	}
	var allowed, changed []string
	var failed failures
	for _, id := range sortedSet(cm.M) {
		switch {
		// Nobody changes their own silence: a silenced manager must not
		// lift it (nor can the owner be silenced by anyone).
		case id == c.ClientID || (add && id == r.Creator):
			failed.add(protocol.ErrOperationUnauthorized, id)
		case add && !r.isMember(id):
			failed.add(protocol.ErrMembershipRequired, id)
		case r.isSilenced(id) != add:
			changed = append(changed, id)
			allowed = append(allowed, id)
		default:
			allowed = append(allowed, id)
		}
	}
	op, single, plural := pb.OpType_shutup_added, pb.OpType_shutuped, pb.OpType_members_shutuped
	if !add {
		op, single, plural = pb.OpType_shutup_removed, pb.OpType_unshutuped, pb.OpType_members_unshutuped
	}
	if len(changed) > 0 {
		if add {
			r.Silenced = setAdd(r.Silenced, changed...)
		} else {
			r.Silenced = setRemove(r.Silenced, changed...)
		}
		b := e.st.NewBatch()
		e.putConv(b, c.App, r)
		ps := e.memberEvent(b, c.App, r.ID, c.ClientID, protocol.ISODate(r.Updated), single, plural, changed,
			without(r.Members, changed))
		if err := e.commitConv(st, c.App, r.ID, b); err != nil {
			return nil, internal("commit shutup", err)
		}
		e.emit(st, ps...)
	}
	return convResponse(op, &pb.ConvCommand{Cid: strp(r.ID), AllowedPids: allowed, FailedPids: failed.proto()}), nil
}

// page returns one page of a sorted list: limit (default 10, max 100)
// entries after the offset encoded in next, and the next cursor ("" at the
// end).
func page(list []string, limit int32, next string) ([]string, string) {
	n := int(limit)
	if n <= 0 {
		n = defaultListLimit
	}
	n = min(n, maxListLimit)
	off, _ := strconv.Atoi(next)
	off = min(max(off, 0), len(list))
	end := min(off+n, len(list))
	cursor := ""
	if end < len(list) {
		cursor = strconv.Itoa(end)
	}
	return append([]string(nil), list[off:end]...), cursor
}

// convQueryShutup implements conv/query_shutup.
func (e *Engine) convQueryShutup(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	m, next := page(r.Silenced, cm.GetLimit(), cm.GetNext())
	out := &pb.ConvCommand{Cid: strp(r.ID), M: m}
	if next != "" {
		out.Next = strp(next)
	}
	return convResponse(pb.OpType_shutup_result, out), nil
}

// convCheckShutup implements conv/check_shutup (Swift): the silenced subset.
func (e *Engine) convCheckShutup(_ context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	var m []string
	for _, id := range sortedSet(cm.M) {
		if r.isSilenced(id) {
			m = append(m, id)
		}
	}
	return convResponse(pb.OpType_check_result, &pb.ConvCommand{Cid: strp(r.ID), M: m}), nil
}

// handleBlacklist implements blacklist/* (spec 3.14.4). Its pushes are conv
// commands.
func (e *Engine) handleBlacklist(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	bm := req.GetBlacklistMessage()
	if bm == nil {
		bm = &pb.BlacklistCommand{}
	}
	switch req.GetOp() {
	case pb.OpType_block, pb.OpType_unblock:
		return e.blacklistChange(ctx, c, bm, req.GetOp() == pb.OpType_block)
	case pb.OpType_query:
		r, err := e.loadLive(c.App, bm.GetSrcCid())
		if err != nil {
			return nil, err
		}
		ids, next := page(r.Blocked, bm.GetLimit(), bm.GetNext())
		out := &pb.BlacklistCommand{SrcCid: strp(r.ID), BlockedPids: ids}
		if next != "" {
			out.Next = strp(next)
		}
		return blacklistResponse(pb.OpType_query_result, out), nil
	case pb.OpType_check_block:
		r, err := e.loadLive(c.App, bm.GetSrcCid())
		if err != nil {
			return nil, err
		}
		out := &pb.BlacklistCommand{SrcCid: strp(r.ID)}
		for _, id := range sortedSet(bm.ToPids) {
			if r.isBlocked(id) {
				out.BlockedPids = append(out.BlockedPids, id)
			}
		}
		return blacklistResponse(pb.OpType_check_result, out), nil
	default:
	}
	return nil, errUnsupported(req)
}

func blacklistResponse(op pb.OpType, bm *pb.BlacklistCommand) *pb.GenericCommand {
	r := response(pb.CommandType_blacklist, op, true)
	r.BlacklistMessage = bm
	return r
}

func (e *Engine) blacklistChange(ctx context.Context, c Caller, bm *pb.BlacklistCommand, block bool) (*pb.GenericCommand, error) {
	st := e.convStripe(c.App, bm.GetSrcCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.moderationTarget(c, bm.GetSrcCid())
	if err != nil {
		return nil, err
	}
	var allowed, changed []string
	var failed failures
	for _, id := range sortedSet(bm.ToPids) {
		switch {
		case block && (id == r.Creator || id == c.ClientID):
			failed.add(protocol.ErrOperationUnauthorized, id)
		case r.isBlocked(id) != block:
			changed = append(changed, id)
			allowed = append(allowed, id)
		default:
			allowed = append(allowed, id)
		}
	}
	op := pb.OpType_blocked
	if !block {
		op = pb.OpType_unblocked
	}
	resp := blacklistResponse(op, &pb.BlacklistCommand{SrcCid: strp(r.ID), AllowedPids: allowed, FailedPids: failed.proto()})
	if len(changed) == 0 {
		return resp, nil
	}
	if !block {
		r.Blocked = setRemove(r.Blocked, changed...)
		b := e.st.NewBatch()
		e.putConv(b, c.App, r)
		ps := e.memberEvent(b, c.App, r.ID, c.ClientID, protocol.ISODate(r.Updated), pb.OpType_unblocked,
			pb.OpType_members_unblocked, changed, r.Members)
		if err := e.commitConv(st, c.App, r.ID, b); err != nil {
			return nil, internal("commit unblock", err)
		}
		e.emit(st, ps...)
		return resp, nil
	}
	r.Blocked = setAdd(r.Blocked, changed...)
	var removed []string
	for _, id := range changed {
		if r.isMember(id) {
			removed = append(removed, id)
		}
	}
	blockPushes := func(b *store.Batch, udate string) []push {
		return e.memberEvent(b, c.App, r.ID, c.ClientID, udate, pb.OpType_blocked, pb.OpType_members_blocked,
			changed, without(r.Members, changed))
	}
	if len(removed) > 0 {
		if err := e.removeMembersLocked(ctx, st, c, r, removed, blockPushes); err != nil {
			return nil, err
		}
		return resp, nil
	}
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	ps := blockPushes(b, protocol.ISODate(r.Updated))
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return nil, internal("commit block", err)
	}
	e.emit(st, ps...)
	return resp, nil
}
