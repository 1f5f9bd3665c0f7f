package conversation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Hooks calls an app's server hooks (node/hooks implements it over HTTP;
// docs/hooks.md is the contract). The engine calls blocking hooks before
// taking any conversation lock, so a slow hook delays only the operation
// that waits for it.
type Hooks interface {
	// Has reports whether app has hook configured (cheap).
	Has(app, hook string) bool
	// Call runs a blocking hook; an error means it failed (timeout, HTTP
	// error, bad answer). The result is nil for "no change".
	Call(ctx context.Context, app, hook string, params map[string]any) (map[string]any, error)
	// FailClosed reports whether a failed call rejects the operation.
	FailClosed(app, hook string) bool
	// Notify queues a notification hook; it never blocks.
	Notify(app, hook string, params map[string]any)
}

// callHook runs a blocking hook. ok is false when the app lacks it or it
// failed open; a failure of a fail-closed hook returns failed (with the
// cause as detail).
func (e *Engine) callHook(ctx context.Context, app, hook string, params map[string]any, failed *protocol.Error) (map[string]any, bool, error) {
	h := e.cfg.Hooks
	if h == nil || !h.Has(app, hook) {
		return nil, false, nil
	}
	res, err := h.Call(ctx, app, hook, params)
	if err != nil {
		if h.FailClosed(app, hook) {
			return nil, false, failed.WithDetail("hook failed: %v", err)
		}
		e.log.Warn("Hook failed, proceeding", "app", app, "hook", hook, "err", err)
		return nil, false, nil
	}
	return res, true, nil
}

func (e *Engine) notifyHook(app, hook string, params map[string]any) {
	if h := e.cfg.Hooks; h != nil && h.Has(app, hook) {
		h.Notify(app, hook, params)
	}
}

// rejection builds the error of a hook's drop/reject answer: base with
// appCode = code, appMsg = detail = detail.
func rejection(base *protocol.Error, res map[string]any) *protocol.Error {
	pe := *base
	if d, ok := res["detail"].(string); ok {
		pe.Detail, pe.AppMsg = d, d
	}
	if c, ok := res["code"].(float64); ok && c == math.Trunc(c) && c >= math.MinInt32 && c <= math.MaxInt32 {
		pe.AppCode = int32(c)
	}
	return &pe
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}

// hookContent is a message's content as hooks see it: the text, or Base64
// with bin = true.
func hookContent(dm *pb.DirectCommand) (string, bool) {
	if dm.BinaryMsg != nil {
		return base64.StdEncoding.EncodeToString(dm.BinaryMsg), true
	}
	return dm.GetMsg(), false
}

// messageReceived runs _messageReceived for a client's message to r
// (before anything is stored) and returns the message to send: the same dm,
// or a copy with the hook's content and, for toPeers, ToPeerIds set to the
// recipients (see prepareSendLocked). A drop answers 4402.
func (e *Engine) messageReceived(ctx context.Context, c Caller, r *convRecord, dm *pb.DirectCommand) (*pb.DirectCommand, error) {
	const hook = "_messageReceived"
	if e.cfg.Hooks == nil || !e.cfg.Hooks.Has(c.App, hook) || c.Session == 0 {
		return dm, nil // REST calls (no session) are the app's own: no blocking hooks
	}
	content, bin := hookContent(dm)
	var toPeers []string
	switch r.Kind {
	case convSystem:
		toPeers = []string{}
	case convTransient:
		ids, err := e.roomList(c.App, r.ID)
		if err != nil {
			return nil, err
		}
		toPeers = without(ids, []string{c.ClientID})
	default:
		toPeers = without(r.Members, []string{c.ClientID})
	}
	params := map[string]any{
		"fromPeer": c.ClientID, "convId": r.ID, "toPeers": toPeers, "transient": dm.GetTransient(), "bin": bin,
		"content": content, "receipt": dm.GetR(), "timestamp": e.nowMs(), "system": r.Kind == convSystem,
		"sourceIP": nil, "groupId": nil, "mentionAll": dm.GetMentionAll(), "mentionPids": nonNil(dm.MentionPids),
	}
	res, ok, err := e.callHook(ctx, c.App, hook, params, protocol.ErrMessageRejectedByApp)
	if err != nil || !ok || len(res) == 0 {
		return dm, err
	}
	if truthy(res["drop"]) {
		return nil, rejection(protocol.ErrMessageRejectedByApp, res)
	}
	out := proto.CloneOf(dm)
	if v, ok := res["content"].(string); ok {
		newBin := bin
		if b, ok := res["bin"].(bool); ok {
			newBin = b
		}
		if newBin {
			raw, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, e.hookAnswerError(c.App, hook, protocol.ErrMessageRejectedByApp, dm, "content is not Base64")
			}
			out.BinaryMsg, out.Msg = raw, nil
		} else {
			out.Msg, out.BinaryMsg = proto.String(v), nil
		}
		if size := len(out.GetMsg()) + len(out.BinaryMsg) + len(out.GetPushData()); size > protocol.MaxContentSize {
			return nil, e.hookAnswerError(c.App, hook, protocol.ErrMessageRejectedByApp, dm, "content over the size limit")
		}
	}
	if list, ok := res["toPeers"].([]any); ok && r.Kind != convSystem {
		peers := []string{}
		for _, p := range list {
			if s, ok := p.(string); ok && s != "" {
				peers = append(peers, s)
			}
		}
		if len(peers) > e.cfg.MaxMembers {
			return nil, e.hookAnswerError(c.App, hook, protocol.ErrMessageRejectedByApp, dm, "toPeers lists too many clients")
		}
		out.ToPeerIds = sortedSet(peers)
		if out.ToPeerIds == nil {
			out.ToPeerIds = []string{}
		}
	}
	return out, nil
}

// hookAnswerError handles an unusable hook answer like a failed call: the
// error when the hook fails closed, otherwise errUseOriginal.
func (e *Engine) hookAnswerError(app, hook string, failed *protocol.Error, _ *pb.DirectCommand, why string) error {
	if e.cfg.Hooks.FailClosed(app, hook) {
		return failed.WithDetail("hook failed: %s", why)
	}
	e.log.Warn("Hook answer unusable, proceeding", "app", app, "hook", hook, "why", why)
	return errUseOriginal
}

// errUseOriginal: the hook's answer is ignored, the original proceeds.
var errUseOriginal = errors.New("conversation: hook answer ignored")

// messageSent notifies _messageSent after a message was delivered.
func (e *Engine) messageSent(c Caller, r *convRecord, dm *pb.DirectCommand, m *message, recipients []string) {
	const hook = "_messageSent"
	if e.cfg.Hooks == nil || !e.cfg.Hooks.Has(c.App, hook) {
		return
	}
	online := e.d.Online(c.App, recipients)
	content, bin := hookContent(dm)
	e.notifyHook(c.App, hook, map[string]any{
		"fromPeer": c.ClientID, "convId": r.ID, "msgId": m.ID, "onlinePeers": nonNil(online),
		"offlinePeers": nonNil(without(sortedSet(recipients), sortedSet(online))), "transient": dm.GetTransient(),
		"system": r.Kind == convSystem, "bin": bin, "content": content, "receipt": dm.GetR(), "timestamp": m.Ts,
		"sourceIP": nil,
	})
}

// directWithHooks runs _messageReceived, the send and _messageSent for a
// client's message (not for will messages: their session is gone).
func (e *Engine) directWithHooks(ctx context.Context, c Caller, dm *pb.DirectCommand) (*pb.GenericCommand, error) {
	// ToPeerIds on a conversation message is only ever set by the hook.
	if dm.ToPeerIds != nil {
		dm = proto.CloneOf(dm)
		dm.ToPeerIds = nil
	}
	hooked := e.cfg.Hooks != nil && (e.cfg.Hooks.Has(c.App, "_messageReceived") || e.cfg.Hooks.Has(c.App, "_messageSent"))
	if !hooked {
		return e.directSend(ctx, c, dm)
	}
	r, err := e.loadConv(c.App, dm.GetCid())
	if err != nil {
		return nil, err
	}
	if r == nil || r.expired(e.nowMs()) || e.checkSend(c, dm.GetCid(), r, dm) != nil && r.Kind != convSystem {
		return e.directSend(ctx, c, dm) // the send answers the error
	}
	sent, err := e.messageReceived(ctx, c, r, dm)
	if errors.Is(err, errUseOriginal) {
		sent, err = dm, nil
	}
	if err != nil {
		return nil, err
	}
	resp, err := e.directSend(ctx, c, sent)
	if err != nil || r.Kind == convSystem {
		return resp, err
	}
	recipients := r.Members
	if sent.ToPeerIds != nil {
		recipients = sent.ToPeerIds
	}
	a := resp.GetAckMessage()
	e.messageSent(c, r, sent, &message{ID: a.GetUid(), Ts: a.GetT()}, without(sortedSet(recipients), []string{c.ClientID}))
	return resp, nil
}

// directSend is the send of handleDirect (without hooks).
func (e *Engine) directSend(ctx context.Context, c Caller, dm *pb.DirectCommand) (*pb.GenericCommand, error) {
	m, err := e.send(ctx, c, dm, "")
	if errors.Is(err, errSysUpstream) {
		return e.sysUpstream(c, dm)
	}
	if err != nil {
		return nil, err
	}
	return ackResponse(dm.GetCid(), m.ID, m.Ts), nil
}

// convHook is the hook pair of a conv op: blocking before, notification
// after.
type convHook struct{ before, after string }

var convHooks = map[pb.OpType]convHook{
	pb.OpType_start:  {"_conversationStart", "_conversationStarted"},
	pb.OpType_add:    {"_conversationAdd", "_conversationAdded"},
	pb.OpType_remove: {"_conversationRemove", "_conversationRemoved"},
	pb.OpType_update: {"_conversationUpdate", ""},
	pb.OpType_mute:   {"_conversationUpdate", ""},
	pb.OpType_unmute: {"_conversationUpdate", ""},
}

// convWithHooks runs a conv op between its hooks. Rejections answer 4305
// with the hook's code and detail; the _conversationStart and
// _conversationUpdate answers may replace attr (and mute).
func (e *Engine) convWithHooks(ctx context.Context, c Caller, op pb.OpType, cm *pb.ConvCommand,
	run func(pb.OpType, *pb.ConvCommand) (*pb.GenericCommand, error)) (*pb.GenericCommand, error) {
	hk, ok := convHooks[op]
	if !ok || e.cfg.Hooks == nil || (!e.cfg.Hooks.Has(c.App, hk.before) && (hk.after == "" || !e.cfg.Hooks.Has(c.App, hk.after))) {
		return run(op, cm)
	}
	ids := sortedSet(cm.M)
	var params map[string]any
	switch op {
	case pb.OpType_start:
		attr, err := parseAttr(cm.Attr)
		if err != nil {
			return nil, err
		}
		params = map[string]any{"initBy": c.ClientID, "members": sortedSet(append(slices.Clone(cm.M), c.ClientID)), "attr": attr}
	case pb.OpType_add:
		params = map[string]any{"initBy": c.ClientID, "members": nonNil(ids), "convId": cm.GetCid()}
	case pb.OpType_remove:
		if !isSelf(ids, c.ClientID) { // self-quit runs no blocking hook
			params = map[string]any{"initBy": c.ClientID, "members": nonNil(ids), "convId": cm.GetCid()}
		}
	case pb.OpType_update:
		attr, err := parseAttr(cm.Attr)
		if err != nil {
			return nil, err
		}
		params = map[string]any{"initBy": c.ClientID, "convId": cm.GetCid(), "attr": attr}
	case pb.OpType_mute, pb.OpType_unmute:
		params = map[string]any{"initBy": c.ClientID, "convId": cm.GetCid(), "mute": op == pb.OpType_mute}
	default:
		// No before-hook for the other ops: params stays nil.
	}
	if params != nil && c.Session != 0 { // REST calls (no session) run no blocking hooks
		res, ok, err := e.callHook(ctx, c.App, hk.before, params, protocol.ErrConversationRejectedByApp)
		if err != nil {
			return nil, err
		}
		if ok && truthy(res["reject"]) {
			return nil, rejection(protocol.ErrConversationRejectedByApp, res)
		}
		if a, isObj := res["attr"].(map[string]any); ok && isObj && (op == pb.OpType_start || op == pb.OpType_update) {
			merged := a
			if op == pb.OpType_start {
				orig, _ := params["attr"].(map[string]any)
				merged = maps.Clone(orig)
				if merged == nil {
					merged = map[string]any{}
				}
				maps.Copy(merged, a)
			}
			data, err := json.Marshal(merged)
			if err != nil {
				return nil, internal("encode hook attr", err)
			}
			cm = proto.CloneOf(cm)
			cm.Attr = protocol.JSON(string(data))
		}
		if m, isBool := res["mute"].(bool); ok && isBool && (op == pb.OpType_mute || op == pb.OpType_unmute) && m != (op == pb.OpType_mute) {
			// The hook turned a mute into an unmute or the reverse.
			return run(map[bool]pb.OpType{true: pb.OpType_mute, false: pb.OpType_unmute}[m], cm)
		}
	}
	resp, err := run(op, cm)
	if err != nil || hk.after == "" {
		return resp, err
	}
	switch op {
	case pb.OpType_start:
		e.notifyHook(c.App, hk.after, map[string]any{"convId": resp.GetConvMessage().GetCid()})
	default:
		if allowed := resp.GetConvMessage().GetAllowedPids(); len(allowed) > 0 {
			e.notifyHook(c.App, hk.after, map[string]any{"initBy": c.ClientID, "convId": cm.GetCid(), "members": allowed})
		}
	}
	return resp, nil
}

// clientOffline notifies _clientOffline (closeCode 1 = logout, 2 = lost
// connection).
func (e *Engine) clientOffline(app, clientID string, clean bool) {
	code, msg := 2, "connection lost"
	if clean {
		code, msg = 1, "logout"
	}
	e.notifyHook(app, "_clientOffline", map[string]any{"peerId": clientID, "closeCode": code, "closeMsg": msg})
}

// patchWithHook runs _messageUpdate before each edit or recall of
// patch/modify: a drop answers 4405, a content answer replaces the new
// content.
func (e *Engine) patchWithHook(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	const hook = "_messageUpdate"
	if e.cfg.Hooks == nil || !e.cfg.Hooks.Has(c.App, hook) || c.Session == 0 {
		return e.handlePatch(ctx, c, req)
	}
	req = proto.CloneOf(req)
	for _, it := range req.GetPatchMessage().GetPatches() {
		r, err := e.loadLive(c.App, it.GetCid())
		if err != nil {
			return nil, err
		}
		content, bin := it.GetData(), false
		if it.BinaryMsg != nil {
			content, bin = base64.StdEncoding.EncodeToString(it.BinaryMsg), true
		}
		if it.GetRecall() && content == "" {
			content = recalledContent
		}
		params := map[string]any{
			"fromPeer": c.ClientID, "convId": r.ID, "toPeers": without(r.Members, []string{c.ClientID}), "bin": bin,
			"content": content, "timestamp": e.nowMs(), "msgId": it.GetMid(), "sourceIP": nil, "recall": it.GetRecall(),
			"system": r.Kind == convSystem,
		}
		res, ok, err := e.callHook(ctx, c.App, hook, params, protocol.ErrMessageUpdateRejectedByApp)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if truthy(res["drop"]) {
			return nil, rejection(protocol.ErrMessageUpdateRejectedByApp, res)
		}
		if v, ok := res["content"].(string); ok && !it.GetRecall() {
			if b, _ := res["bin"].(bool); b {
				raw, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					continue // unusable answer: the edit proceeds unchanged
				}
				it.BinaryMsg, it.Data = raw, nil
			} else {
				it.Data, it.BinaryMsg = proto.String(v), nil
			}
		}
	}
	return e.handlePatch(ctx, c, req)
}
