package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// maxBody bounds a server-side REST request body.
const maxBody = 1 << 20

// maxQueryWindow bounds limit and skip of a conversation query.
const maxQueryWindow = 100000

// routesAdmin registers the server-side REST API. Every call needs the master
// key and acts as the client named in the request (the engine applies the
// same rules as for that client's SDK).
func (s *Server) routesAdmin() {
	s.mux.HandleFunc("POST /1.1/rtm/conversations", s.master(s.createConversation))
	s.mux.HandleFunc("GET /1.1/rtm/conversations", s.master(s.queryConversations))
	s.mux.HandleFunc("GET /1.1/rtm/conversations/{cid}", s.master(s.getConversation))
	s.mux.HandleFunc("PUT /1.1/rtm/conversations/{cid}", s.master(s.updateConversation))
	s.mux.HandleFunc("POST /1.1/rtm/conversations/{cid}/members", s.master(s.members(pb.OpType_add)))
	s.mux.HandleFunc("DELETE /1.1/rtm/conversations/{cid}/members", s.master(s.members(pb.OpType_remove)))
	s.mux.HandleFunc("POST /1.1/rtm/conversations/{cid}/messages", s.master(s.sendMessage))
	s.mux.HandleFunc("GET /1.1/rtm/conversations/{cid}/messages", s.master(s.history))
	s.mux.HandleFunc("POST /1.1/rtm/clients/{client}/kick", s.master(s.kick))
}

type masterHandler func(w http.ResponseWriter, r *http.Request, app *apps.App)

func (s *Server) master(h masterHandler) http.HandlerFunc {
	return s.withApp(func(w http.ResponseWriter, r *http.Request, app *apps.App, master bool) {
		if !master {
			writeError(w, http.StatusForbidden, 401, "the server-side API needs the master key: X-LC-Key: <masterKey>,master")
			return
		}
		h(w, r, app)
	})
}

// do runs one command as clientID and writes the engine's error if any.
func (s *Server) do(w http.ResponseWriter, r *http.Request, app *apps.App, clientID string, cmd *pb.GenericCommand) (*pb.GenericCommand, bool) {
	if clientID == "" || len(clientID) > 64 {
		writeError(w, http.StatusBadRequest, 107, "client_id must be 1-64 characters")
		return nil, false
	}
	resp, err := s.cfg.Engine.Handle(r.Context(), conversation.Caller{App: app.ID, ClientID: clientID}, cmd)
	if err != nil {
		s.writeEngineError(w, err)
		return nil, false
	}
	if resp == nil {
		writeError(w, http.StatusInternalServerError, 4200, "no response")
		return nil, false
	}
	return resp, true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, 107, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func (s *Server) createConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientID   string         `json:"client_id"`
		Members    []string       `json:"members"`
		Name       string         `json:"name"`
		Unique     bool           `json:"unique"`
		Transient  bool           `json:"transient"`
		Attributes map[string]any `json:"attributes"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	attr := map[string]any{}
	maps.Copy(attr, body.Attributes)
	if body.Name != "" {
		attr["name"] = body.Name
	}
	data, err := jsonString(attr)
	if err != nil {
		writeError(w, http.StatusBadRequest, 107, "attributes must be JSON")
		return
	}
	members := append([]string{body.ClientID}, body.Members...)
	cmd := &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), ConvMessage: &pb.ConvCommand{
		M: members, Unique: proto.Bool(body.Unique), Attr: protocol.JSON(data),
	}}
	if body.Transient {
		cmd.ConvMessage.Transient = proto.Bool(true)
	}
	resp, ok := s.do(w, r, app, body.ClientID, cmd)
	if !ok {
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"objectId": resp.GetConvMessage().GetCid(), "createdAt": resp.GetConvMessage().GetCdate()})
}

func (s *Server) queryConversations(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	cm := &pb.ConvCommand{Where: protocol.JSON(q.Get("where"))}
	if q.Get("where") == "" {
		cm.Where = protocol.JSON("{}")
	}
	if v := q.Get("sort"); v != "" {
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
	clientID := q.Get("client_id")
	if clientID == "" {
		clientID = "__rest"
	}
	s.runQuery(w, r, app, clientID, cm)
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	where, _ := jsonString(map[string]string{"objectId": r.PathValue("cid")})
	s.runQuery(w, r, app, "__rest", &pb.ConvCommand{Where: protocol.JSON(where), Limit: proto.Int32(1)})
}

func (s *Server) runQuery(w http.ResponseWriter, r *http.Request, app *apps.App, clientID string, cm *pb.ConvCommand) {
	resp, ok := s.do(w, r, app, clientID, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), ConvMessage: cm})
	if !ok {
		return
	}
	var results []any
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetResults().GetData()), &results); err != nil {
		s.writeEngineError(w, err)
		return
	}
	if results == nil {
		results = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (s *Server) updateConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientID string         `json:"client_id"`
		Attr     map[string]any `json:"attr"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	data, err := jsonString(body.Attr)
	if err != nil || len(body.Attr) == 0 {
		writeError(w, http.StatusBadRequest, 107, "attr must be a non-empty JSON object of changes")
		return
	}
	resp, ok := s.do(w, r, app, body.ClientID, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_update.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), Attr: protocol.JSON(data)}})
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"updatedAt": resp.GetConvMessage().GetUdate(), "attrModified": rawJSON(resp.GetConvMessage().GetAttrModified().GetData())})
}

func (s *Server) members(op pb.OpType) masterHandler {
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		var body struct {
			ClientID string   `json:"client_id"`
			Members  []string `json:"members"`
		}
		if !decodeBody(w, r, &body) {
			return
		}
		if len(body.Members) == 0 {
			writeError(w, http.StatusBadRequest, 107, "members must list at least one client id")
			return
		}
		resp, ok := s.do(w, r, app, body.ClientID, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(),
			ConvMessage: &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), M: body.Members}})
		if !ok {
			return
		}
		failed := []map[string]any{}
		for _, f := range resp.GetConvMessage().GetFailedPids() {
			failed = append(failed, map[string]any{"code": f.GetCode(), "error": f.GetReason(), "clientIds": f.GetPids()})
		}
		writeJSON(w, http.StatusOK, map[string]any{"allowed": nonNil(resp.GetConvMessage().GetAllowedPids()), "failed": failed})
	}
}

func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		FromClient  string   `json:"from_client"`
		Message     string   `json:"message"`
		Binary      bool     `json:"binary"`
		Transient   bool     `json:"transient"`
		MentionAll  bool     `json:"mention_all"`
		MentionPids []string `json:"mention_client_ids"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	dm := &pb.DirectCommand{Cid: proto.String(r.PathValue("cid")), MentionPids: body.MentionPids}
	if body.Binary {
		raw, err := base64.StdEncoding.DecodeString(body.Message)
		if err != nil || len(raw) == 0 {
			writeError(w, http.StatusBadRequest, 107, "binary message must be non-empty Base64")
			return
		}
		dm.BinaryMsg = raw
	} else {
		dm.Msg = proto.String(body.Message)
	}
	if body.Transient {
		dm.Transient = proto.Bool(true)
	}
	if body.MentionAll {
		dm.MentionAll = proto.Bool(true)
	}
	resp, ok := s.do(w, r, app, body.FromClient, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: dm})
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"msg-id": resp.GetAckMessage().GetUid(), "timestamp": resp.GetAckMessage().GetT()})
}

func (s *Server) history(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	lm := &pb.LogsCommand{Cid: proto.String(r.PathValue("cid"))}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			writeError(w, http.StatusBadRequest, 107, "limit must be 0-1000")
			return
		}
		limit = n
	}
	lm.Limit = proto.Int32(int32(limit))
	if v := q.Get("max_ts"); v != "" {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, 107, "max_ts must be milliseconds")
			return
		}
		lm.T = proto.Int64(t)
		if mid := q.Get("msgid"); mid != "" {
			lm.Mid = proto.String(mid)
		}
	}
	if q.Get("reversed") == "true" {
		lm.Direction = pb.LogsCommand_NEW.Enum()
	}
	resp, ok := s.do(w, r, app, q.Get("client_id"), &pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), LogsMessage: lm})
	if !ok {
		return
	}
	out := []map[string]any{}
	for _, l := range resp.GetLogsMessage().GetLogs() {
		m := map[string]any{"msg-id": l.GetMsgId(), "from": l.GetFrom(), "timestamp": l.GetTimestamp(), "data": l.GetData(), "conv-id": lm.GetCid()}
		if l.GetBin() {
			m["bin"] = true
		}
		if l.PatchTimestamp != nil {
			m["patch-timestamp"] = l.GetPatchTimestamp()
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

func (s *Server) kick(w http.ResponseWriter, r *http.Request, app *apps.App) {
	n := s.cfg.Kicker.Kick(app.ID, r.PathValue("client"))
	writeJSON(w, http.StatusOK, map[string]any{"sessions": n})
}

func rawJSON(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return json.RawMessage("{}")
	}
	return json.RawMessage(s)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
