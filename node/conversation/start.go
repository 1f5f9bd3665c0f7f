package conversation

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// reservedColumns cannot be set through attr (spec 3.4.1).
var reservedColumns = map[string]bool{
	"objectId": true, "m": true, "c": true, "mu": true, "tr": true, "sys": true, "unique": true,
	"uniqueId": true, "lm": true, "createdAt": true, "updatedAt": true, "ttl": true, "temp": true,
	"conv_type": true,
}

// parseAttr decodes a JSON object of columns. Absent or empty input is an
// empty map.
func parseAttr(j *pb.JsonObjectMessage) (map[string]any, error) {
	if j == nil || j.GetData() == "" {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(j.GetData()), &m); err != nil || m == nil {
		return nil, protocol.ErrConversationUpdateFailed.WithDetail("attr must be a JSON object")
	}
	return m, nil
}

// convStart implements conv/start (spec 3.4).
func (e *Engine) convStart(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	attr, err := parseAttr(cm.Attr)
	if err != nil {
		return nil, err
	}
	cols := map[string]any{}
	for k, v := range attr {
		if !reservedColumns[k] {
			cols[k] = v
		}
	}
	if err := checkColumns(cols); err != nil {
		return nil, err
	}
	switch {
	case cm.GetTransient():
		return e.startRoom(c, cm.GetCid(), cols)
	case cm.GetTempConv():
		return e.startNormal(ctx, c, cm, cols, true)
	default:
		return e.startNormal(ctx, c, cm, cols, false)
	}
}

// startRoom creates a chat room. id is the room's id when the cluster
// router chose it (so the room is created where its conversation shard is
// coordinated, with its online set); empty means a new one.
func (e *Engine) startRoom(c Caller, id string, cols map[string]any) (*pb.GenericCommand, error) {
	now := e.nowMs()
	if id != "" {
		if err := e.checkNewID(c.App, id); err != nil {
			return nil, err
		}
	} else {
		id = newConvID(now)
	}
	r := &convRecord{ID: id, Creator: c.ClientID, Kind: convTransient, Created: now, Updated: now, Columns: cols}
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	b.Set(e.roomKey(c.App, r.ID, c.ClientID), nil)
	if err := e.st.Commit(b); err != nil {
		return nil, internal("commit chat room", err)
	}
	e.rooms.replace(c.App, r.ID, []string{c.ClientID})
	return convResponse(pb.OpType_started, &pb.ConvCommand{Cid: strp(r.ID), Cdate: isoDate(now), Udate: isoDate(now)}), nil
}

// startNormal creates a normal or temporary conversation, or returns the
// existing one with the same member set when unique.
func (e *Engine) startNormal(ctx context.Context, c Caller, cm *pb.ConvCommand, cols map[string]any, temp bool) (*pb.GenericCommand, error) {
	members := sortedSet(append(append([]string(nil), cm.M...), c.ClientID))
	limit := e.cfg.MaxMembers
	if temp {
		limit = e.cfg.MaxTempMembers
	}
	if len(members) > limit {
		return nil, protocol.ErrConversationFull.WithDetail("at most %d members", limit)
	}
	unique := temp || cm.Unique == nil || cm.GetUnique()
	if cm.Unique != nil && !cm.GetUnique() {
		unique = false
	}
	now := e.nowMs()
	r := &convRecord{Creator: c.ClientID, Members: members, Kind: convNormal, Created: now, Updated: now, Columns: cols}
	if temp {
		ttl := e.tempTTL(cm.GetTempConvTTL())
		r.Kind, r.TTL, r.Expire = convTemporary, int32(ttl/time.Second), now+ttl.Milliseconds()
		r.ID = tempPrefix + newConvID(now)
	} else {
		r.ID = newConvID(now)
	}
	if !unique {
		if cm.GetCid() != "" {
			r.ID = cm.GetCid() // chosen by the router (routeStart)
		}
		st := e.convStripe(c.App, r.ID)
		st.mu.Lock()
		defer e.unlockAndDrain(st)
		if cm.GetCid() != "" {
			if err := e.checkNewID(c.App, r.ID); err != nil {
				return nil, err
			}
		}
		return e.createConvLocked(ctx, c, r, nil, st)
	}
	r.Unique, r.UniqueID = true, uniqueKey(members)
	idxKey := r.UniqueID
	prefix := ""
	if temp {
		idxKey, prefix = "tmp:"+r.UniqueID, tempPrefix
	}
	r.ID = e.newConvIDIn(c.App, e.shards.ConvShard(c.App, idxKey), prefix, now)
	st := e.convStripe(c.App, "unique:"+idxKey)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	existing, err := e.uniqueConv(c.App, idxKey)
	if err != nil {
		return nil, err
	}
	if existing != nil && slices.Equal(existing.Members, members) {
		return convResponse(pb.OpType_started, startedMsg(existing, true)), nil
	}
	return e.createConvLocked(ctx, c, r, e.uniqueIndexKey(c.App, idxKey), st)
}

// checkNewID checks an id the router chose for a new conversation (see
// Engine.withNewCid): the form newConvID produces, and no conversation
// has it yet. The caller holds the id's stripe lock, or the conversation
// is a chat room (created where its shard is coordinated, its online set
// there).
func (e *Engine) checkNewID(app, id string) error {
	if !validConvID(id) {
		return protocol.ErrInvalidMessagingTarget.WithDetail("invalid conversation id %q", id)
	}
	r, err := e.loadConv(app, id)
	if err != nil {
		return err
	}
	if r != nil {
		return protocol.ErrInvalidMessagingTarget.WithDetail("conversation %s exists", id)
	}
	return nil
}

// validConvID reports whether id has the form newConvID produces.
func validConvID(id string) bool {
	if len(id) != 24 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// newRoomID returns a fresh conversation id for Route.
func (e *Engine) newRoomID() string { return newConvID(e.nowMs()) }

func (e *Engine) tempTTL(req int32) time.Duration {
	if req <= 0 {
		return e.cfg.DefaultTempTTL
	}
	return min(time.Duration(req)*time.Second, e.cfg.MaxTempTTL)
}

// dropUniqueIndex adds to b the deletion of k, the unique index key of the
// deleted conversation cid, when k still names cid and lives in cid's own
// shard (then b commits it atomically with the deletion, at the node that
// also serves the key's creations). A key in another shard (an imported
// conversation keeps its original id) is left as it is: its deletion would
// travel through the outbox and could land after the member set started a
// new conversation that took the key, removing the new mapping. A key that
// names a deleted or expired conversation counts as free (uniqueConv), and
// the next creation overwrites it.
func (e *Engine) dropUniqueIndex(b *store.Batch, app, cid string, k []byte) error {
	if shard, err := store.ShardOf(k); err != nil || shard != e.shards.ConvShard(app, cid) {
		return nil
	}
	v, err := e.st.Get(k)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return internal("load unique index", err)
	}
	if string(v) == cid {
		b.Delete(k)
	}
	return nil
}

// uniqueConv returns the live conversation registered under a unique key.
func (e *Engine) uniqueConv(app, idxKey string) (*convRecord, error) {
	v, err := e.st.Get(e.uniqueIndexKey(app, idxKey))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load unique index", err)
	}
	r, err := e.loadConv(app, string(v))
	if err != nil || r == nil || r.expired(e.nowMs()) {
		return nil, err
	}
	return r, nil
}

func startedMsg(r *convRecord, existing bool) *pb.ConvCommand {
	out := &pb.ConvCommand{Cid: strp(r.ID), Cdate: isoDate(r.Created), Udate: isoDate(r.Updated)}
	if r.Unique {
		out.UniqueId = strp(r.UniqueID)
	}
	if r.Kind == convTemporary {
		out.TempConvTTL = int32p(r.TTL)
	}
	if existing {
		out.Existing = boolp(true)
	}
	return out
}

// createConvLocked commits a new conversation with its member index and
// notifications, then queues joined + members_joined for every member,
// creator included. The caller holds st.mu (the new conversation's stripe, or
// the unique key's stripe: nobody else can reach a conversation that is not
// committed yet) and drains st after releasing it.
func (e *Engine) createConvLocked(ctx context.Context, c Caller, r *convRecord, uniqueIdx []byte, st *stripe) (*pb.GenericCommand, error) {
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	if uniqueIdx != nil {
		b.Set(uniqueIdx, []byte(r.ID))
	}
	for _, id := range r.Members {
		e.indexClient(b, c.App, id, r, 0, r.Created)
	}
	udate := protocol.ISODate(r.Updated)
	joined := e.reliable(b, c.App, r.Members, convPush(pb.OpType_joined, r.ID, c.ClientID, udate, nil))
	mj := e.reliable(b, c.App, r.Members, convPush(pb.OpType_members_joined, r.ID, c.ClientID, udate, r.Members))
	ps := []push{{app: c.App, to: r.Members, cmd: joined}, {app: c.App, to: r.Members, cmd: mj}}
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return nil, internal("commit conversation", err)
	}
	e.emit(st, ps...)
	return convResponse(pb.OpType_started, startedMsg(r, false)), nil
}

// convPush builds a conv push {cid, initBy, udate, m?}.
func convPush(op pb.OpType, cid, initBy, udate string, m []string) *pb.GenericCommand {
	cmd := newPush(pb.CommandType_conv, op.Enum())
	cm := &pb.ConvCommand{Cid: strp(cid), InitBy: strp(initBy)}
	if udate != "" {
		cm.Udate = strp(udate)
	}
	if len(m) > 0 {
		cm.M = append([]string(nil), m...)
	}
	cmd.ConvMessage = cm
	return cmd
}
