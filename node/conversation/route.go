package conversation

import (
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Routed is one part of a command and the shard whose coordinator must run
// it. Anywhere means any node may run it (reads that scatter through the
// KV, or a new conversation nobody can reach yet).
type Routed struct {
	Req      *pb.GenericCommand
	Shard    uint16
	Anywhere bool
}

// Route splits req into the parts a cluster runs on shard coordinators: a
// command touching one conversation runs where that conversation's writes
// are serialized; conv/start of a unique or temporary conversation where its
// unique key is; read with several conversations becomes one read per
// conversation (read has no response). Route does not validate req: the
// engine does that wherever it runs.
func (e *Engine) Route(c Caller, req *pb.GenericCommand) []Routed {
	one := func(cid string) []Routed {
		if cid == "" {
			return []Routed{{Req: req, Anywhere: true}}
		}
		return []Routed{{Req: req, Shard: e.shards.ConvShard(c.App, cid)}}
	}
	switch req.GetCmd() {
	case pb.CommandType_conv:
		cm := req.GetConvMessage()
		switch {
		case req.GetOp() == pb.OpType_start && cm.GetTransient():
			// The room is created at its shard's coordinator: choose the
			// id here, once (the coordinator routes the same request
			// again and must find the same shard).
			part := req
			if cm.GetCid() == "" {
				part = proto.CloneOf(req)
				part.ConvMessage.Cid = strp(e.newRoomID())
			}
			return []Routed{{Req: part, Shard: e.shards.ConvShard(c.App, part.ConvMessage.GetCid())}}
		case req.GetOp() == pb.OpType_start:
			if idx, ok := e.startIndexKey(c, cm); ok {
				return []Routed{{Req: req, Shard: e.shards.ConvShard(c.App, idx)}}
			}
			return one("")
		case req.GetOp() == pb.OpType_query:
			return one("")
		case cm.GetCid() != "":
			return one(cm.GetCid())
		case len(cm.GetCids()) > 0:
			return one(cm.GetCids()[0])
		}
		return one("")
	case pb.CommandType_direct:
		return one(req.GetDirectMessage().GetCid())
	case pb.CommandType_ack:
		return one(req.GetAckMessage().GetCid())
	case pb.CommandType_logs:
		return one(req.GetLogsMessage().GetCid())
	case pb.CommandType_patch:
		if ps := req.GetPatchMessage().GetPatches(); len(ps) > 0 {
			return one(ps[0].GetCid())
		}
		return one("")
	case pb.CommandType_blacklist:
		return one(req.GetBlacklistMessage().GetSrcCid())
	case pb.CommandType_read:
		return e.routeRead(c, req)
	default:
	}
	return one("")
}

func (e *Engine) routeRead(c Caller, req *pb.GenericCommand) []Routed {
	rm := req.GetReadMessage()
	tuples := rm.GetConvs()
	for _, cid := range append(rm.GetCids(), rm.GetCid()) {
		if cid != "" {
			tuples = append(tuples, &pb.ReadTuple{Cid: strp(cid)})
		}
	}
	if len(tuples) <= 1 {
		if len(tuples) == 0 {
			return []Routed{{Req: req, Anywhere: true}}
		}
		return []Routed{{Req: req, Shard: e.shards.ConvShard(c.App, tuples[0].GetCid())}}
	}
	out := make([]Routed, 0, len(tuples))
	for _, t := range tuples {
		part := proto.CloneOf(req)
		part.ReadMessage = &pb.ReadCommand{Convs: []*pb.ReadTuple{t}}
		out = append(out, Routed{Req: part, Shard: e.shards.ConvShard(c.App, t.GetCid())})
	}
	return out
}

// startIndexKey returns the unique-index key conv/start takes its lock on
// (see startNormal), or false for conversations without one.
func (e *Engine) startIndexKey(c Caller, cm *pb.ConvCommand) (string, bool) {
	temp := cm.GetTempConv()
	unique := temp || cm.Unique == nil || cm.GetUnique()
	if cm.Unique != nil && !cm.GetUnique() {
		unique = false
	}
	if !unique {
		return "", false
	}
	idx := uniqueKey(sortedSet(append(append([]string(nil), cm.M...), c.ClientID)))
	if temp {
		idx = "tmp:" + idx
	}
	return idx, true
}
