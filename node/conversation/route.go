package conversation

import (
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Routed is one part of a command and the shard whose coordinator must run
// it. Anywhere means any node may run it (reads that scatter through the
// KV).
type Routed struct {
	Req      *pb.GenericCommand
	Shard    uint16
	Anywhere bool
}

// Route splits req into the parts a cluster runs on shard coordinators: a
// command touching one conversation runs where that conversation's writes
// are serialized; conv/start of a unique or temporary conversation where its
// unique key is; read with several conversations becomes one read per
// conversation (read has no response). The rule of each command is its row
// in the command table (commands.go). Route does not validate req: the
// engine does that wherever it runs.
func (e *Engine) Route(c Caller, req *pb.GenericCommand) []Routed {
	if c.Server() && req.GetCmd() == pb.CommandType_data { // a server call (serverops.go)
		return e.routeCid(c, req, req.GetConvMessage().GetCid())
	}
	if _, ok := c.admin(); ok {
		return e.routeAdmin(c, req)
	}
	if cmd, ok := lookupCommand(req); ok {
		return cmd.route(e, c, req)
	}
	return []Routed{{Req: req, Anywhere: true}}
}

// routeCid routes req to the coordinator of conversation cid, or anywhere
// without one.
func (e *Engine) routeCid(c Caller, req *pb.GenericCommand, cid string) []Routed {
	if cid == "" {
		return []Routed{{Req: req, Anywhere: true}}
	}
	return []Routed{{Req: req, Shard: e.shards.ConvShard(c.App, cid)}}
}

// routeStart routes conv/start: a unique or temporary conversation is
// created where its unique key is (its id is then chosen in that shard),
// a chat room or any other new conversation at its own shard's coordinator
// (routeNew).
func (e *Engine) routeStart(c Caller, req *pb.GenericCommand) []Routed {
	cm := req.GetConvMessage()
	if idx, ok := e.startIndexKey(c, cm); ok && !cm.GetTransient() {
		return []Routed{{Req: req, Shard: e.shards.ConvShard(c.App, idx)}}
	}
	return e.routeNew(c, req)
}

// routeNew routes the creation of a conversation (a chat room, a
// conversation without a unique key, a system conversation) to the
// coordinator of its shard: its id is chosen here, once (the coordinator
// routes the same request again and must find the same shard), and the
// engine there creates the conversation under that id (checkNewID).
func (e *Engine) routeNew(c Caller, req *pb.GenericCommand) []Routed {
	part := req
	if req.GetConvMessage().GetCid() == "" {
		part = proto.CloneOf(req)
		if part.ConvMessage == nil {
			part.ConvMessage = &pb.ConvCommand{}
		}
		part.ConvMessage.Cid = strp(e.newRoomID())
	}
	return []Routed{{Req: part, Shard: e.shards.ConvShard(c.App, part.ConvMessage.GetCid())}}
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
