package conversation

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// The server API's writes (DeleteMessage, CreateConversation,
// ImportConversation, ImportMessages, SetUnread, TempSilence,
// DeleteConversation) run at their conversation's coordinator like every
// client command: ServerAPI turns each call into a command of the back
// end (a BackendCaller's `data` command carrying the call as JSON, the
// conversation's id in convMessage.cid) and hands it to the router, which
// runs it at the coordinator of the conversation's shard, forwarded once
// over the peer transport when another node coordinates it. There the
// engine runs the Engine method of the same name, under the
// conversation's stripe lock. No client can send such a command: the
// gateway hands the engine only the commands of the command table, and
// `data` is answered only for a back-end caller.

// serverCall is one server API write as it travels to the coordinator.
type serverCall struct {
	Op     string                `json:"op"`
	Mid    string                `json:"mid,omitempty"`
	Ts     int64                 `json:"ts,omitempty"`
	Conv   *ImportedConversation `json:"conv,omitempty"`
	Msgs   []ImportedMessage     `json:"msgs,omitempty"`
	Unread map[string]int        `json:"unread,omitempty"`
	Client string                `json:"client,omitempty"`
	TTLms  int64                 `json:"ttlMs,omitempty"`
}

// serverResult is the answer of a serverCall.
type serverResult struct {
	ID    string `json:"id,omitempty"`
	New   bool   `json:"new,omitempty"`
	Added int    `json:"added,omitempty"`
}

// Server call names.
const (
	callDeleteMessage      = "deleteMessage"
	callCreateConversation = "createConversation"
	callImportConversation = "importConversation"
	callImportMessages     = "importMessages"
	callSetUnread          = "setUnread"
	callTempSilence        = "tempSilence"
	callDeleteConversation = "deleteConversation"
)

// importChunk is how many messages one routed ImportMessages command
// carries (at most 5 KiB of content each, so a command stays far below the
// peer transport's frame limit).
const importChunk = 100

// ServerAPI is the engine as the server API uses it: its writes and
// commands run at their conversation's coordinator through handle (the
// router's Handle); its reads (Notifications, ConversationMembers, unread
// counts) run on the local engine, whose store.KV reads at the shards'
// coordinators.
type ServerAPI struct {
	*Engine
	handle func(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)
}

// NewServerAPI returns the ServerAPI of e running commands through handle.
func NewServerAPI(e *Engine, handle func(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)) ServerAPI {
	return ServerAPI{Engine: e, handle: handle}
}

// Handle runs a command at its coordinator.
func (s ServerAPI) Handle(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	return s.handle(ctx, c, req)
}

// call runs sc for conversation cid at its coordinator.
func (s ServerAPI) call(ctx context.Context, app, cid string, sc serverCall) (serverResult, error) {
	var res serverResult
	data, err := json.Marshal(sc)
	if err != nil {
		return res, internal("encode server call", err)
	}
	req := &pb.GenericCommand{Cmd: pb.CommandType_data.Enum(), Service: int32p(protocol.ServiceIM),
		ConvMessage: &pb.ConvCommand{Cid: strp(cid), Attr: protocol.JSON(string(data))}}
	resp, err := s.handle(ctx, BackendCaller(app, ""), req)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetAttr().GetData()), &res); err != nil {
		return res, internal("decode server call result", err)
	}
	return res, nil
}

// DeleteMessage is Engine.DeleteMessage at the conversation's coordinator.
func (s ServerAPI) DeleteMessage(ctx context.Context, app, cid, mid string, ts int64) error {
	_, err := s.call(ctx, app, cid, serverCall{Op: callDeleteMessage, Mid: mid, Ts: ts})
	return err
}

// CreateConversation is Engine.CreateConversation at the coordinator of
// the new conversation (chosen here, in the shard of its unique key when
// unique).
func (s ServerAPI) CreateConversation(ctx context.Context, app string, in ImportedConversation) (string, error) {
	in = s.newConversation(app, in)
	res, err := s.call(ctx, app, in.ID, serverCall{Op: callCreateConversation, Conv: &in})
	return res.ID, err
}

// ImportConversation is Engine.ImportConversation at the conversation's
// coordinator.
func (s ServerAPI) ImportConversation(ctx context.Context, app string, in ImportedConversation) (bool, error) {
	if err := validImportID(in.ID); err != nil {
		return false, err
	}
	res, err := s.call(ctx, app, in.ID, serverCall{Op: callImportConversation, Conv: &in})
	return res.New, err
}

// ImportMessages is Engine.ImportMessages at the conversation's
// coordinator, importChunk messages per command; on an error the chunks
// before it are imported (ImportMessages is idempotent: repeat the call).
func (s ServerAPI) ImportMessages(ctx context.Context, app, cid string, msgs []ImportedMessage) (int, error) {
	if len(msgs) > MaxImportMessages {
		return 0, protocol.ErrFrameTooLong.WithDetail("at most %d messages per call", MaxImportMessages)
	}
	added := 0
	for start := 0; start < len(msgs) || start == 0; start += importChunk {
		res, err := s.call(ctx, app, cid, serverCall{Op: callImportMessages, Msgs: msgs[start:min(start+importChunk, len(msgs))]})
		added += res.Added
		if err != nil {
			return added, err
		}
	}
	return added, nil
}

// SetUnread is Engine.SetUnread at the conversation's coordinator.
func (s ServerAPI) SetUnread(ctx context.Context, app, cid string, unread map[string]int) error {
	_, err := s.call(ctx, app, cid, serverCall{Op: callSetUnread, Unread: unread})
	return err
}

// TempSilence is Engine.TempSilence at the conversation's coordinator.
func (s ServerAPI) TempSilence(ctx context.Context, app, cid, clientID string, ttl time.Duration) error {
	_, err := s.call(ctx, app, cid, serverCall{Op: callTempSilence, Client: clientID, TTLms: ttl.Milliseconds()})
	return err
}

// DeleteConversation is Engine.DeleteConversation at the conversation's
// coordinator.
func (s ServerAPI) DeleteConversation(ctx context.Context, app, cid string) error {
	_, err := s.call(ctx, app, cid, serverCall{Op: callDeleteConversation})
	return err
}

// handleServerCall runs a server call (a back-end caller's data command)
// here, at the conversation's coordinator.
func (e *Engine) handleServerCall(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	var sc serverCall
	dec := json.NewDecoder(bytes.NewReader([]byte(req.GetConvMessage().GetAttr().GetData())))
	dec.UseNumber() // custom columns keep their numbers exactly
	if err := dec.Decode(&sc); err != nil {
		return nil, protocol.ErrInternal.WithDetail("malformed server call: %v", err)
	}
	cid := req.GetConvMessage().GetCid()
	var res serverResult
	var err error
	switch sc.Op {
	case callDeleteMessage:
		err = e.DeleteMessage(ctx, c.App, cid, sc.Mid, sc.Ts)
	case callCreateConversation, callImportConversation:
		if sc.Conv == nil || sc.Conv.ID != cid {
			return nil, protocol.ErrInternal.WithDetail("server call %s without its conversation", sc.Op)
		}
		if sc.Op == callCreateConversation {
			if !validConvID(cid) {
				return nil, protocol.ErrInternal.WithDetail("server call %s with id %q", sc.Op, cid)
			}
			res.ID, err = e.createConversation(c.App, *sc.Conv)
			if err == nil && res.ID == cid { // created, not a unique conversation found again
				e.notifyHook(c.App, "_conversationStarted", map[string]any{"convId": cid})
			}
		} else {
			res.New, err = e.ImportConversation(ctx, c.App, *sc.Conv)
		}
	case callImportMessages:
		res.Added, err = e.ImportMessages(ctx, c.App, cid, sc.Msgs)
	case callSetUnread:
		err = e.SetUnread(ctx, c.App, cid, sc.Unread)
	case callTempSilence:
		err = e.TempSilence(ctx, c.App, cid, sc.Client, time.Duration(sc.TTLms)*time.Millisecond)
	case callDeleteConversation:
		err = e.DeleteConversation(ctx, c.App, cid)
	default:
		return nil, protocol.ErrInternal.WithDetail("unknown server call %q", sc.Op)
	}
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, internal("encode server call result", err)
	}
	resp := response(pb.CommandType_data, 0, false)
	resp.ConvMessage = &pb.ConvCommand{Cid: strp(cid), Attr: protocol.JSON(string(out))}
	return resp, nil
}
