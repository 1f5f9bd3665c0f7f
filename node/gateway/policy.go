package gateway

import (
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// checkPolicy applies the app's switches to a session command before the
// engine sees it: conversation-action signatures (spec 3.1.4) and the
// edit/recall off-switches (spec 3.13). It returns nil to proceed.
func (g *Gateway) checkPolicy(app *apps.App, clientID string, req *pb.GenericCommand) *protocol.Error {
	switch req.GetCmd() {
	case pb.CommandType_conv:
		if app.ConversationSignature {
			return g.checkConvSignature(app, clientID, req)
		}
	case pb.CommandType_patch:
		for _, p := range req.GetPatchMessage().GetPatches() {
			if p.GetRecall() && app.DisableRecall {
				return protocol.ErrMessageRecallDisabled.WithDetail("recalling messages is disabled for this app")
			}
			if !p.GetRecall() && app.DisableEdit {
				return protocol.ErrMessageEditDisabled.WithDetail("editing messages is disabled for this app")
			}
		}
	default:
	}
	return nil
}

// checkConvSignature verifies s/t/n of conv/start, conv/add (also join) and
// conv/remove (also quit) against LeanCloud's signed strings.
func (g *Gateway) checkConvSignature(app *apps.App, clientID string, req *pb.GenericCommand) *protocol.Error {
	cm := req.GetConvMessage()
	var action string
	switch req.GetOp() {
	case pb.OpType_start:
		action = "create"
	case pb.OpType_add:
		action = "invite"
	case pb.OpType_remove:
		action = "kick"
	default:
		return nil
	}
	msg := apps.ConversationMessage(app.ID, clientID, cm.GetCid(), cm.GetM(), cm.GetT(), cm.GetN(), action)
	if err := app.Verify(msg, cm.GetS(), cm.GetT(), g.cfg.Now()); err != nil {
		return protocol.ErrConversationSignature.WithDetail("%v", err)
	}
	return nil
}
