package conversation

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// recalledContent replaces a recalled message's content when the client
// sends none (the JS SDK); both SDKs recognise a recall by this type.
const recalledContent = `{"_lctype":-127}`

// maxPatchesSince caps the patches returned after one login.
const maxPatchesSince = 1000

// handlePatch implements patch/modify (spec 3.13): edit or recall one's own
// message.
func (e *Engine) handlePatch(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	items := req.GetPatchMessage().GetPatches()
	if len(items) == 0 {
		return nil, protocol.ErrMessageNotFound.WithDetail("no patch given")
	}
	var last int64
	for _, it := range items {
		ts, err := e.patchOne(ctx, c, it)
		if err != nil {
			return nil, err
		}
		last = max(last, ts)
	}
	resp := response(pb.CommandType_patch, pb.OpType_modified, true)
	resp.PatchMessage = &pb.PatchCommand{LastPatchTime: int64p(last)}
	return resp, nil
}

func (e *Engine) patchOne(_ context.Context, c Caller, it *pb.PatchItem) (int64, error) {
	if err := checkContentSize(len(it.GetData())+len(it.BinaryMsg), it.MentionPids); err != nil {
		return 0, err
	}
	cid := it.GetCid()
	st := e.convStripe(c.App, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(c.App, cid)
	if err != nil {
		return 0, err
	}
	m, err := e.lookupMessage(c.App, cid, it.GetMid())
	if err != nil {
		return 0, err
	}
	if m == nil {
		return 0, protocol.ErrMessageNotFound.WithDetail("message %q not found", it.GetMid())
	}
	if m.From != c.ClientID {
		return 0, protocol.ErrMessageOwnershipRequired
	}
	// Like a send's timestamp, a patch's is assigned only under the
	// shard's lease (the next holder's are above it); without it the
	// router retries the patch at the coordinator.
	if !e.shards.Coordinates(e.shards.ConvShard(c.App, cid)) {
		return 0, ErrNotCoordinator
	}
	patchTs := max(e.nowMs(), r.LastPatch+1)
	if patchTs == m.Ts {
		patchTs++
	}
	applyPatch(m, it)
	m.PatchTs = patchTs
	r.LastPatch = patchTs
	item := patchItem(r.ID, m, it.GetRecall())
	v, err := proto.Marshal(item)
	if err != nil {
		return 0, internal("encode patch", err)
	}
	b := e.st.NewBatch()
	e.putMessage(b, c.App, cid, m)
	e.putConv(b, c.App, r)
	b.Set(e.convKey(c.App, cid, store.FamPatch).Int64(patchTs).Str(m.ID).Bytes(), v)
	if err := e.commitConv(st, c.App, cid, b); err != nil {
		return 0, internal("commit patch", err)
	}
	p := newPush(pb.CommandType_patch, pb.OpType_modify.Enum())
	p.PatchMessage = &pb.PatchCommand{Patches: []*pb.PatchItem{item}, LastPatchTime: int64p(patchTs)}
	to := r.Members
	if r.Kind == convTransient {
		var err error
		if to, err = e.roomList(c.App, cid); err != nil {
			return 0, err
		}
	}
	e.emit(st, push{app: c.App, to: to, except: c.Session, cmd: p})
	return patchTs, nil
}

// applyPatch replaces m's content and mentions with the patch's.
func applyPatch(m *message, it *pb.PatchItem) {
	switch {
	case it.BinaryMsg != nil:
		m.Bin, m.IsBin, m.Data = it.BinaryMsg, true, ""
	case it.Data != nil:
		m.Bin, m.IsBin, m.Data = nil, false, it.GetData()
	case it.GetRecall():
		m.Bin, m.IsBin, m.Data = nil, false, recalledContent
	}
	m.Type, m.HasType = 0, false
	if !m.IsBin {
		m.Type, m.HasType = lcType(m.Data)
	}
	m.MentionAll = it.GetMentionAll()
	m.MentionPids = it.MentionPids
}

func patchItem(cid string, m *message, recall bool) *pb.PatchItem {
	item := &pb.PatchItem{Cid: strp(cid), Mid: strp(m.ID), Timestamp: int64p(m.Ts), PatchTimestamp: int64p(m.PatchTs),
		From: strp(m.From), MentionAll: boolp(m.MentionAll), MentionPids: m.MentionPids}
	if recall {
		item.Recall = boolp(true)
	}
	if m.IsBin {
		item.BinaryMsg = m.Bin
	} else {
		item.Data = strp(m.Data)
	}
	return item
}

// PatchesSince returns the patches with patchTimestamp > since of messages in
// the client's conversations (spec 3.1.8), oldest first, with lastPatchTime
// set to the newest; nil if none or since <= 0. Safe for concurrent use.
func (e *Engine) PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error) {
	if since <= 0 {
		return nil, nil
	}
	cids, err := e.clientConvs(app, clientID)
	if err != nil {
		return nil, err
	}
	var items []*pb.PatchItem
	for _, cid := range cids {
		prefix := e.convKey(app, cid, store.FamPatch)
		err := e.st.Scan(prefix.Int64(since+1).Bytes(), store.PrefixEnd(prefix.Bytes()), false, func(_, v []byte) (bool, error) {
			it := &pb.PatchItem{}
			if err := proto.Unmarshal(v, it); err != nil {
				return false, internal("decode patch", err)
			}
			items = append(items, it)
			return len(items) < maxPatchesSince && ctx.Err() == nil, ctx.Err()
		})
		if err != nil {
			return nil, internal("scan patches", err)
		}
	}
	if len(items) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(items, func(a, b *pb.PatchItem) int {
		return compareInt64(a.GetPatchTimestamp(), b.GetPatchTimestamp())
	})
	return &pb.PatchCommand{Patches: items, LastPatchTime: int64p(items[len(items)-1].GetPatchTimestamp())}, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
