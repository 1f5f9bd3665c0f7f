package conversation

import (
	"context"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

type rooms struct{}

func (r *rooms) init() {}

type wills struct{}

func (w *wills) init() {}

func (e *Engine) sweepLoop(ctx context.Context) { <-ctx.Done() }

func (e *Engine) convStart(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convAdd(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convRemove(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convUpdate(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convQuery(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convCount(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convMute(ctx context.Context, c Caller, cm *pb.ConvCommand, mute bool) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convMaxRead(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convIsMember(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convMembers(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convMemberInfoUpdate(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convShutup(ctx context.Context, c Caller, cm *pb.ConvCommand, add bool) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convQueryShutup(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) convCheckShutup(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) handleDirect(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) handleReceiverAck(ctx context.Context, c Caller, req *pb.GenericCommand) error {
	return nil
}
func (e *Engine) handleRead(ctx context.Context, c Caller, req *pb.GenericCommand) error { return nil }
func (e *Engine) handleLogs(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) handlePatch(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}
func (e *Engine) handleBlacklist(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	return nil, errStub
}

var errStub = protocolStub()

// UnreadSummary returns the unread summary pushed after login (spec 3.1.8),
// or nil if there is nothing to report.
func (e *Engine) UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error) {
	return nil, nil
}

// PatchesSince returns the patches newer than since in the client's
// conversations, or nil if none.
func (e *Engine) PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error) {
	return nil, nil
}

// SessionGone is called by the gateway after a session ended and was removed
// from its registry.
func (e *Engine) SessionGone(app, clientID string, s SessionID, clean bool) {}

// MemberInfo is one row of _ConversationMemberInfo.
type MemberInfo struct {
	Cid      string
	ClientID string
	Role     string
}

// ConversationMembers returns the member infos with explicit roles.
func (e *Engine) ConversationMembers(ctx context.Context, app, cid string) ([]MemberInfo, error) {
	return nil, nil
}
