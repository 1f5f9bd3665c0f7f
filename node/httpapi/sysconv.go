package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// routesSysConv registers LeanCloud's v1.2 system-conversation API
// ("service conversations") under /1.2/rtm and /1.1/rtm. Every call needs
// the master key. Shapes follow LeanCloud's documentation; see
// docs/system-conversations.md.
func (s *Server) routesSysConv() {
	for _, v := range []string{"/1.1", "/1.2"} {
		p := v + "/rtm/service-conversations"
		s.mux.HandleFunc("POST "+p, s.master(s.sysCreate))
		s.mux.HandleFunc("GET "+p, s.master(s.sysQuery))
		s.mux.HandleFunc("PUT "+p+"/{cid}", s.master(s.sysUpdate))
		s.mux.HandleFunc("DELETE "+p+"/{cid}", s.master(s.sysDelete))
		s.mux.HandleFunc("POST "+p+"/{cid}/subscribers", s.master(s.sysSubscribe))
		s.mux.HandleFunc("DELETE "+p+"/{cid}/subscribers/{client}", s.master(s.sysUnsubscribe))
		s.mux.HandleFunc("GET "+p+"/{cid}/subscribers", s.master(s.sysSubscribers))
		s.mux.HandleFunc("GET "+p+"/{cid}/subscribers/count", s.master(s.sysCount))
		s.mux.HandleFunc("GET "+p+"/{cid}/subscribers/{client}/messages", s.master(s.sysHistory))
		s.mux.HandleFunc("POST "+p+"/{cid}/broadcasts", s.master(s.sysBroadcast))
		s.mux.HandleFunc("POST "+p+"/{cid}/messages", s.master(s.sysMessage))
	}
}

// sysDo runs a server-side system-conversation command.
func (s *Server) sysDo(w http.ResponseWriter, r *http.Request, app *apps.App, from string, cmd *pb.GenericCommand) (*pb.GenericCommand, bool) {
	resp, err := s.cfg.Engine.Handle(r.Context(), conversation.SystemCaller(app.ID, from), cmd)
	if err != nil {
		s.writeEngineError(w, err)
		return nil, false
	}
	return resp, true
}

func convCmd(op pb.OpType, cm *pb.ConvCommand) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm}
}

// columnsBody reads a JSON object of columns.
func columnsBody(w http.ResponseWriter, r *http.Request) (map[string]any, string, bool) {
	var cols map[string]any
	if !decodeBody(w, r, &cols) {
		return nil, "", false
	}
	if cols == nil {
		writeError(w, http.StatusBadRequest, 107, "body must be a JSON object of columns")
		return nil, "", false
	}
	data, _ := json.Marshal(cols)
	return cols, string(data), true
}

func (s *Server) sysCreate(w http.ResponseWriter, r *http.Request, app *apps.App) {
	cols, data, ok := columnsBody(w, r)
	if !ok {
		return
	}
	resp, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_start, &pb.ConvCommand{Unique: proto.Bool(false), Attr: protocol.JSON(data)}))
	if !ok {
		return
	}
	cm := resp.GetConvMessage()
	out := map[string]any{}
	for k, v := range cols {
		if v != nil {
			out[k] = v
		}
	}
	out["objectId"], out["createdAt"], out["updatedAt"], out["sys"] = cm.GetCid(), cm.GetCdate(), cm.GetUdate(), true
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) sysQuery(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	where := map[string]any{}
	if v := q.Get("where"); v != "" {
		if err := json.Unmarshal([]byte(v), &where); err != nil || where == nil {
			writeError(w, http.StatusBadRequest, 107, "where must be a JSON object")
			return
		}
	}
	where["sys"] = true
	data, _ := json.Marshal(where)
	cm := &pb.ConvCommand{Where: protocol.JSON(string(data)), Limit: proto.Int32(100)}
	if v := q.Get("order"); v != "" {
		cm.Sort = proto.String(v)
	}
	for name, dst := range map[string]**int32{"limit": &cm.Limit, "skip": &cm.Skip} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 || n > maxQueryWindow {
				writeError(w, http.StatusBadRequest, 107, name+" must be an integer in [0, 100000]")
				return
			}
			*dst = proto.Int32(int32(n))
		}
	}
	resp, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_query, cm))
	if !ok {
		return
	}
	results := []map[string]any{}
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetResults().GetData()), &results); err != nil {
		s.writeEngineError(w, err)
		return
	}
	for _, d := range results {
		delete(d, "joined") // the requester's subscription: none here
		delete(d, "joinedAt")
		delete(d, "muted")
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (s *Server) sysUpdate(w http.ResponseWriter, r *http.Request, app *apps.App) {
	_, data, ok := columnsBody(w, r)
	if !ok {
		return
	}
	cid := r.PathValue("cid")
	resp, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_update, &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(data)}))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"objectId": cid, "updatedAt": resp.GetConvMessage().GetUdate()})
}

func (s *Server) sysDelete(w http.ResponseWriter, r *http.Request, app *apps.App) {
	if _, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_close, &pb.ConvCommand{Cid: proto.String(r.PathValue("cid"))})); ok {
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

func (s *Server) sysSubscribe(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientID string `json:"client_id"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.sysChangeSub(w, r, app, body.ClientID, pb.OpType_add)
}

func (s *Server) sysUnsubscribe(w http.ResponseWriter, r *http.Request, app *apps.App) {
	s.sysChangeSub(w, r, app, r.PathValue("client"), pb.OpType_remove)
}

func (s *Server) sysChangeSub(w http.ResponseWriter, r *http.Request, app *apps.App, clientID string, op pb.OpType) {
	if !validClient(w, clientID, "client_id") {
		return
	}
	resp, ok := s.sysDo(w, r, app, "", convCmd(op, &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), M: []string{clientID}}))
	if !ok {
		return
	}
	if f := resp.GetConvMessage().GetFailedPids(); len(f) > 0 {
		writeError(w, http.StatusForbidden, int(f[0].GetCode()), f[0].GetReason())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// validClient checks a client id taken from a request.
func validClient(w http.ResponseWriter, id, name string) bool {
	if id == "" || len(id) > 64 {
		writeError(w, http.StatusBadRequest, 107, name+" must be 1-64 characters")
		return false
	}
	for _, c := range id {
		if c < 0x20 || c == 0x7f {
			writeError(w, http.StatusBadRequest, 107, name+" contains a control character")
			return false
		}
	}
	return true
}

func (s *Server) sysSubscribers(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	cm := &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), Next: proto.String(q.Get("client_id"))}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > conversation.MaxSubscriberPage {
			writeError(w, http.StatusBadRequest, 107, "limit must be 1-50")
			return
		}
		cm.Limit = proto.Int32(int32(n)) //nolint:gosec // n is within 1..MaxSubscriberPage (checked above)
	}
	resp, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_members, cm))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(resp.GetConvMessage().GetResults().GetData()))
}

func (s *Server) sysCount(w http.ResponseWriter, r *http.Request, app *apps.App) {
	resp, ok := s.sysDo(w, r, app, "", convCmd(pb.OpType_count, &pb.ConvCommand{Cid: proto.String(r.PathValue("cid"))}))
	if ok {
		writeJSON(w, http.StatusOK, map[string]any{"count": resp.GetConvMessage().GetCount()})
	}
}

// sysSendBody is the body of broadcasts and messages.
type sysSendBody struct {
	FromClient string          `json:"from_client"`
	Message    string          `json:"message"`
	ToClients  []string        `json:"to_clients"`
	Transient  bool            `json:"transient"`
	Push       json.RawMessage `json:"push"`
	PushData   json.RawMessage `json:"push_data"`
}

func (s *Server) sysBroadcast(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body sysSendBody
	if !decodeBody(w, r, &body) {
		return
	}
	body.ToClients, body.Transient = nil, false
	if body.PushData == nil {
		body.PushData = body.Push
	}
	s.sysSend(w, r, app, body, true)
}

func (s *Server) sysMessage(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body sysSendBody
	if !decodeBody(w, r, &body) {
		return
	}
	if len(body.ToClients) == 0 || len(body.ToClients) > conversation.MaxSysRecipients {
		writeError(w, http.StatusBadRequest, 107, "to_clients must list 1-20 client ids")
		return
	}
	s.sysSend(w, r, app, body, false)
}

func (s *Server) sysSend(w http.ResponseWriter, r *http.Request, app *apps.App, body sysSendBody, both bool) {
	if !validClient(w, body.FromClient, "from_client") {
		return
	}
	for _, id := range body.ToClients {
		if !validClient(w, id, "to_clients") {
			return
		}
	}
	if body.Message == "" {
		writeError(w, http.StatusBadRequest, 107, "message is required")
		return
	}
	dm := &pb.DirectCommand{Cid: proto.String(r.PathValue("cid")), Msg: proto.String(body.Message), ToPeerIds: body.ToClients}
	if body.Transient {
		dm.Transient = proto.Bool(true)
	}
	if len(body.PushData) > 0 && string(body.PushData) != "null" {
		// push may be a JSON string or object (LeanCloud accepts both).
		var str string
		if json.Unmarshal(body.PushData, &str) == nil {
			dm.PushData = proto.String(str)
		} else {
			dm.PushData = proto.String(string(body.PushData))
		}
	}
	resp, ok := s.sysDo(w, r, app, body.FromClient, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: dm})
	if !ok {
		return
	}
	out := map[string]any{"msg-id": resp.GetAckMessage().GetUid(), "timestamp": resp.GetAckMessage().GetT()}
	if both {
		// The docs show the fields at the top level, the Swift test helper
		// reads them under result: answer both.
		out["result"] = map[string]any{"msg-id": resp.GetAckMessage().GetUid(), "timestamp": resp.GetAckMessage().GetT()}
	}
	writeJSON(w, http.StatusOK, out)
}

// sysHistory lists what the system conversation holds for one client:
// the broadcasts and the messages sent to it, newest first (LeanCloud's
// history parameters limit, timestamp + msgid, reversed).
func (s *Server) sysHistory(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	clientID := r.PathValue("client")
	if !validClient(w, clientID, "client_id") {
		return
	}
	lm := &pb.LogsCommand{Cid: proto.String(r.PathValue("cid")), Limit: proto.Int32(100)}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, 107, "limit must be 1-100")
			return
		}
		lm.Limit = proto.Int32(int32(n)) //nolint:gosec // n is within 1..100 (checked above)
	}
	if v := q.Get("timestamp"); v != "" {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, 107, "timestamp must be milliseconds")
			return
		}
		lm.T, lm.Mid = proto.Int64(t), proto.String(q.Get("msgid"))
	}
	if q.Get("reversed") == "true" {
		lm.Direction = pb.LogsCommand_NEW.Enum()
	}
	resp, err := s.cfg.Engine.Handle(r.Context(), conversation.BackendCaller(app.ID, clientID),
		&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), LogsMessage: lm})
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	logs := resp.GetLogsMessage().GetLogs()
	out := make([]map[string]any, 0, len(logs))
	for i := range logs {
		l := logs[len(logs)-1-i] // newest first unless reversed
		if q.Get("reversed") == "true" {
			l = logs[i]
		}
		out = append(out, map[string]any{"msg-id": l.GetMsgId(), "timestamp": l.GetTimestamp(), "from": l.GetFrom(),
			"data": l.GetData(), "bin": l.GetBin(), "to": lm.GetCid(), "conv-id": lm.GetCid(), "is-conv": true, "is-room": false})
	}
	writeJSON(w, http.StatusOK, out)
}
