package conversation

import (
	"testing"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestCommandTable: every command the engine serves has a route and a
// handler, and the gateway's view (IsCommand) matches the table.
func TestCommandTable(t *testing.T) {
	for k, cmd := range commands {
		if cmd.route == nil || cmd.handle == nil {
			t.Errorf("%v/%v (any op %v): route or handler missing", k.cmd, k.op, k.anyOp)
		}
	}
	for _, c := range []pb.CommandType{pb.CommandType_conv, pb.CommandType_direct, pb.CommandType_ack, pb.CommandType_read,
		pb.CommandType_logs, pb.CommandType_patch, pb.CommandType_blacklist} {
		if !IsCommand(c) {
			t.Errorf("%v not in the command table", c)
		}
	}
	for _, c := range []pb.CommandType{pb.CommandType_session, pb.CommandType_echo, pb.CommandType_login, pb.CommandType_report} {
		if IsCommand(c) {
			t.Errorf("%v is the gateway's, not the engine's", c)
		}
	}
	if _, ok := lookupCommand(&pb.GenericCommand{Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_modify.Enum()}); !ok {
		t.Error("patch/modify missing")
	}
	if _, ok := lookupCommand(&pb.GenericCommand{Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_start.Enum()}); ok {
		t.Error("patch/start found: only modify is served")
	}
	if _, ok := lookupCommand(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_modify.Enum()}); ok {
		t.Error("conv/modify found")
	}
}
