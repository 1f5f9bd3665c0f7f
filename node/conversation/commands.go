package conversation

import (
	"context"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// command is one row of the command table: where a command runs (route)
// and what runs it there (handle). Adding a command is adding a row.
type command struct {
	// route names the shards whose coordinators run the command (Route).
	route func(e *Engine, c Caller, req *pb.GenericCommand) []Routed
	// handle runs it (Handle).
	handle func(e *Engine, ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)
	// idempotent, if set, reports whether running req twice has the
	// effect and answer of running it once (Idempotent).
	idempotent func(req *pb.GenericCommand) bool
	// rate is the client rate limit the command counts against (RateOf).
	rate RateClass
}

// RateClass names the per-client rate limit a command counts against
// (apps.Limits; the gateway enforces them before a command runs).
type RateClass uint8

const (
	// RateNone: not counted (receiver acks, read receipts, and conv/query,
	// which has a rate of its own).
	RateNone RateClass = iota
	// RateSend: a message (apps.Limits.SendsPerMinutePerClient).
	RateSend
	// RateHistory: a history query (HistoryQueriesPerMinutePerClient).
	RateHistory
	// RateOp: any other conversation operation (OpsPerMinutePerClient).
	RateOp
)

// RateOf returns the client rate limit req counts against.
func RateOf(req *pb.GenericCommand) RateClass {
	cmd, _ := lookupCommand(req)
	return cmd.rate
}

// commandKey selects a row: a command and its op; anyOp rows serve every op
// of a command that has no row of its own.
type commandKey struct {
	cmd   pb.CommandType
	op    pb.OpType
	anyOp bool
}

// commands is the command table of the engine's client commands.
var commands map[commandKey]command

func init() {
	byCid := func(cid func(*pb.GenericCommand) string) func(*Engine, Caller, *pb.GenericCommand) []Routed {
		return func(e *Engine, c Caller, req *pb.GenericCommand) []Routed { return e.routeCid(c, req, cid(req)) }
	}
	anywhere := func(_ *Engine, _ Caller, req *pb.GenericCommand) []Routed {
		return []Routed{{Req: req, Anywhere: true}}
	}
	convCid := byCid(func(req *pb.GenericCommand) string {
		cm := req.GetConvMessage()
		if cm.GetCid() == "" && len(cm.GetCids()) > 0 {
			return cm.GetCids()[0]
		}
		return cm.GetCid()
	})
	conv := func(op pb.OpType, route func(*Engine, Caller, *pb.GenericCommand) []Routed,
		h func(e *Engine, ctx context.Context, c Caller, op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error)) {
		rate := RateOp
		if op == pb.OpType_query {
			rate = RateNone // its own rate (apps.Limits.QueriesPerSecondPerSession)
		}
		commands[commandKey{cmd: pb.CommandType_conv, op: op}] = command{route: route, handle: convHandler(h), rate: rate}
	}
	everyOp := func(cmd pb.CommandType, rate RateClass, route func(*Engine, Caller, *pb.GenericCommand) []Routed,
		h func(e *Engine, ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)) {
		commands[commandKey{cmd: cmd, anyOp: true}] = command{route: route, handle: h, rate: rate}
	}
	noResponse := func(h func(e *Engine, ctx context.Context, c Caller, req *pb.GenericCommand) error) func(*Engine, context.Context, Caller, *pb.GenericCommand) (*pb.GenericCommand, error) {
		return func(e *Engine, ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
			return nil, h(e, ctx, c, req)
		}
	}
	commands = map[commandKey]command{}

	conv(pb.OpType_start, (*Engine).routeStart, func(e *Engine, ctx context.Context, c Caller, _ pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
		return e.convStart(ctx, c, cm)
	})
	always := func(*pb.GenericCommand) bool { return true }
	conv(pb.OpType_query, anywhere, func(e *Engine, ctx context.Context, c Caller, _ pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
		return e.convQuery(ctx, c, cm)
	})
	for op, h := range map[pb.OpType]func(*Engine, context.Context, Caller, *pb.ConvCommand) (*pb.GenericCommand, error){
		pb.OpType_add:                (*Engine).convAdd,
		pb.OpType_remove:             (*Engine).convRemove,
		pb.OpType_update:             (*Engine).convUpdate,
		pb.OpType_count:              (*Engine).convCount,
		pb.OpType_max_read:           (*Engine).convMaxRead,
		pb.OpType_is_member:          (*Engine).convIsMember,
		pb.OpType_members:            (*Engine).convMembers,
		pb.OpType_member_info_update: (*Engine).convMemberInfoUpdate,
		pb.OpType_query_shutup:       (*Engine).convQueryShutup,
		pb.OpType_check_shutup:       (*Engine).convCheckShutup,
	} {
		conv(op, convCid, func(e *Engine, ctx context.Context, c Caller, _ pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
			return h(e, ctx, c, cm)
		})
	}
	for _, op := range []pb.OpType{pb.OpType_mute, pb.OpType_unmute} {
		conv(op, convCid, func(e *Engine, ctx context.Context, c Caller, op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
			return e.convMute(ctx, c, cm, op == pb.OpType_mute)
		})
	}
	for _, op := range []pb.OpType{pb.OpType_add_shutup, pb.OpType_remove_shutup} {
		conv(op, convCid, func(e *Engine, ctx context.Context, c Caller, op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
			return e.convShutup(ctx, c, cm, op == pb.OpType_add_shutup)
		})
	}
	everyOp(pb.CommandType_direct, RateSend, byCid(func(req *pb.GenericCommand) string { return req.GetDirectMessage().GetCid() }),
		(*Engine).handleDirect)
	// A stored message with a de-duplication token is stored once however
	// often it is sent (dedupLookup).
	setIdempotent(commandKey{cmd: pb.CommandType_direct, anyOp: true}, func(req *pb.GenericCommand) bool {
		dm := req.GetDirectMessage()
		return dm.GetDt() != "" && !dm.GetTransient() && !dm.GetWill()
	})
	everyOp(pb.CommandType_ack, RateNone, byCid(func(req *pb.GenericCommand) string { return req.GetAckMessage().GetCid() }),
		noResponse((*Engine).handleReceiverAck))
	setIdempotent(commandKey{cmd: pb.CommandType_ack, anyOp: true}, always)
	everyOp(pb.CommandType_read, RateNone, (*Engine).routeRead, noResponse((*Engine).handleRead))
	setIdempotent(commandKey{cmd: pb.CommandType_read, anyOp: true}, always)
	everyOp(pb.CommandType_logs, RateHistory, byCid(func(req *pb.GenericCommand) string { return req.GetLogsMessage().GetCid() }),
		(*Engine).handleLogs)
	setIdempotent(commandKey{cmd: pb.CommandType_logs, anyOp: true}, always)
	// Reads of a conversation.
	for _, op := range []pb.OpType{pb.OpType_query, pb.OpType_count, pb.OpType_max_read, pb.OpType_is_member,
		pb.OpType_members, pb.OpType_query_shutup, pb.OpType_check_shutup} {
		setIdempotent(commandKey{cmd: pb.CommandType_conv, op: op}, always)
	}
	commands[commandKey{cmd: pb.CommandType_patch, op: pb.OpType_modify}] = command{
		route: byCid(func(req *pb.GenericCommand) string {
			if ps := req.GetPatchMessage().GetPatches(); len(ps) > 0 {
				return ps[0].GetCid()
			}
			return ""
		}),
		handle: (*Engine).patchWithHook,
		rate:   RateOp,
	}
	everyOp(pb.CommandType_blacklist, RateOp, byCid(func(req *pb.GenericCommand) string { return req.GetBlacklistMessage().GetSrcCid() }),
		(*Engine).handleBlacklist)
}

// setIdempotent marks the row k idempotent when f(req) holds.
func setIdempotent(k commandKey, f func(*pb.GenericCommand) bool) {
	cmd := commands[k]
	cmd.idempotent = f
	commands[k] = cmd
}

// Idempotent reports whether running req twice has the effect and answer
// of running it once (a send with a de-duplication token, acks, reads), so
// a router may run it again when it cannot tell whether an attempt ran.
func (e *Engine) Idempotent(req *pb.GenericCommand) bool {
	cmd, ok := lookupCommand(req)
	return ok && cmd.idempotent != nil && cmd.idempotent(req)
}

// convHandler adapts a conv op handler: a missing conv message is an empty
// one, the op runs between its server hooks (convWithHooks), and the ops a
// client may address to a system conversation are answered by sysConvOp
// when the conversation is one.
func convHandler(h func(e *Engine, ctx context.Context, c Caller, op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error)) func(*Engine, context.Context, Caller, *pb.GenericCommand) (*pb.GenericCommand, error) {
	return func(e *Engine, ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
		cm := req.GetConvMessage()
		if cm == nil {
			cm = &pb.ConvCommand{}
		}
		return e.convWithHooks(ctx, c, req.GetOp(), cm, func(op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
			if resp, ok, err := e.sysConvOp(c, op, cm); ok {
				return resp, err
			}
			if op != req.GetOp() { // a hook turned a mute into an unmute or back
				row, _ := lookupCommand(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum()})
				return row.handle(e, ctx, c, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm})
			}
			return h(e, ctx, c, op, cm)
		})
	}
}

// lookupCommand returns req's row of the command table.
func lookupCommand(req *pb.GenericCommand) (command, bool) {
	if cmd, ok := commands[commandKey{cmd: req.GetCmd(), op: req.GetOp()}]; ok {
		return cmd, true
	}
	cmd, ok := commands[commandKey{cmd: req.GetCmd(), anyOp: true}]
	return cmd, ok
}

// IsCommand reports whether the engine serves cmd (with some op): the
// gateway hands exactly these to the engine.
func IsCommand(cmd pb.CommandType) bool {
	for k := range commands {
		if k.cmd == cmd {
			return true
		}
	}
	return false
}
