package httpapi

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func nowMs() int64 { return time.Now().UnixMilli() }

// sendBody is the body of POST .../messages (v1.2; from_peer/conv_id are
// v1.1's names).
type sendBody struct {
	FromClient  string   `json:"from_client"`
	FromPeer    string   `json:"from_peer"`
	ConvID      string   `json:"conv_id"`
	Message     string   `json:"message"`
	Binary      bool     `json:"binary"`
	Transient   *bool    `json:"transient"`
	MentionAll  bool     `json:"mention_all"`
	MentionPids []string `json:"mention_client_ids"`
	PushData    any      `json:"push_data"`
}

// sendMessage implements POST /rtm/conversations/{cid}/messages: a message
// from from_client (any client: the back end need not be a member).
// Answers {"msg-id", "timestamp"}.
func (s *Server) sendMessage(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body sendBody
	if !decodeBody(w, r, &body) {
		return
	}
	s.send(w, r, app, r.PathValue("cid"), body, false)
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, app *apps.App, cid string, body sendBody, legacy bool) {
	from := body.FromClient
	if from == "" {
		from = body.FromPeer
	}
	if !needClient(w, "from_client", from) {
		return
	}
	if len(body.MentionPids) > 20 {
		writeError(w, http.StatusBadRequest, 107, "mention_client_ids lists at most 20 client ids")
		return
	}
	dm := &pb.DirectCommand{Cid: proto.String(cid), MentionPids: body.MentionPids}
	if body.Binary {
		raw, err := base64.StdEncoding.DecodeString(body.Message)
		if err != nil || len(raw) == 0 {
			writeError(w, http.StatusBadRequest, 107, "binary message must be non-empty Base64")
			return
		}
		dm.BinaryMsg = raw
	} else {
		if body.Message == "" {
			writeError(w, http.StatusBadRequest, 107, "message must be a non-empty string")
			return
		}
		dm.Msg = proto.String(body.Message)
	}
	// v1.1 sends are transient unless told otherwise; v1.2 ones stored.
	if body.Transient != nil && *body.Transient || body.Transient == nil && legacy {
		dm.Transient = proto.Bool(true)
	}
	if body.MentionAll {
		dm.MentionAll = proto.Bool(true)
	}
	switch p := body.PushData.(type) {
	case nil:
	case string:
		dm.PushData = proto.String(p)
	default:
		data, err := jsonString(p)
		if err != nil {
			writeError(w, http.StatusBadRequest, 107, "push_data must be a string or an object")
			return
		}
		dm.PushData = proto.String(data)
	}
	resp, ok := s.do(w, r, app, from, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: dm})
	if !ok {
		return
	}
	if legacy {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"msg-id": resp.GetAckMessage().GetUid(), "timestamp": resp.GetAckMessage().GetT()})
}

// history implements GET /rtm/conversations/{cid}/messages (v1.2): start
// point msgid+timestamp, end point till_msgid+till_timestamp, both
// exclusive unless include_start/include_stop, newest first unless
// reversed, limit default 100, max 1000. Any conversation, no member
// needed. Answers a JSON array of message records.
func (s *Server) history(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	lm := &pb.LogsCommand{Cid: proto.String(r.PathValue("cid"))}
	limit, ok := intParam(w, r, "limit", 100, 0, 1000)
	if !ok {
		return
	}
	lm.Limit = proto.Int32(int32(limit))
	ts, ok := intParam(w, r, "timestamp", 0, 0, math.MaxInt64)
	if !ok {
		return
	}
	till, ok := intParam(w, r, "till_timestamp", 0, 0, math.MaxInt64)
	if !ok {
		return
	}
	if ts > 0 {
		lm.T, lm.Mid = proto.Int64(ts), proto.String(q.Get("msgid"))
	}
	if till > 0 {
		lm.Tt, lm.Tmid = proto.Int64(till), proto.String(q.Get("till_msgid"))
	}
	if boolParam(r, "include_start") {
		lm.TIncluded = proto.Bool(true)
	}
	if boolParam(r, "include_stop") {
		lm.TtIncluded = proto.Bool(true)
	}
	if boolParam(r, "reversed") {
		lm.Direction = pb.LogsCommand_NEW.Enum()
	}
	s.writeHistory(w, r, app, lm)
}

// writeHistory runs a logs command for the back end and answers the
// records newest first (oldest first when reversed), as LeanCloud.
func (s *Server) writeHistory(w http.ResponseWriter, r *http.Request, app *apps.App, lm *pb.LogsCommand) {
	cid := lm.GetCid()
	resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), LogsMessage: lm})
	if !ok {
		return
	}
	logs := resp.GetLogsMessage().GetLogs()
	out := make([]map[string]any, 0, len(logs))
	for _, l := range logs {
		out = append(out, messageRecord(cid, l))
	}
	if lm.GetDirection() != pb.LogsCommand_NEW {
		// The engine answers ascending; LeanCloud's default is newest first.
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// messageRecord is a message as LeanCloud's REST history returns it, plus
// mention-all, mention-pids and patch-timestamp when set.
func messageRecord(cid string, l *pb.LogItem) map[string]any {
	m := map[string]any{"msg-id": l.GetMsgId(), "timestamp": l.GetTimestamp(), "from": l.GetFrom(), "data": l.GetData(),
		"bin": l.GetBin(), "to": cid, "conv-id": internalConvID(cid), "is-conv": true, "is-room": false, "from-ip": nil}
	if l.AckAt != nil {
		m["ack-at"] = l.GetAckAt()
	}
	if l.PatchTimestamp != nil {
		m["patch-timestamp"] = l.GetPatchTimestamp()
	}
	if l.GetMentionAll() {
		m["mention-all"] = true
	}
	if len(l.MentionPids) > 0 {
		m["mention-pids"] = l.MentionPids
	}
	return m
}

// internalConvID is LeanCloud's 32-hex conv-id of a record: the objectId
// followed by eight zeros for a 24-hex id, else the id itself.
func internalConvID(cid string) string {
	if len(cid) == 24 {
		if _, err := hex.DecodeString(cid); err == nil {
			return cid + "00000000"
		}
	}
	return cid
}

// convFromInternal inverts internalConvID (v1.1's convid parameter).
func convFromInternal(id string) string {
	if len(id) == 32 && strings.HasSuffix(id, "00000000") {
		if _, err := hex.DecodeString(id); err == nil {
			return id[:24]
		}
	}
	return id
}

// patchMessage implements PUT .../messages/{mid} {"from_client", "message",
// "timestamp"} and .../recall {"from_client", "timestamp"}: a patch by the
// message's sender (others get 4403), pushed to the members as patch/modify.
func (s *Server) patchMessage(recall bool) masterHandler {
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		var body struct {
			FromClient string `json:"from_client"`
			Message    string `json:"message"`
			Timestamp  int64  `json:"timestamp"`
		}
		if !decodeBody(w, r, &body) {
			return
		}
		if !needClient(w, "from_client", body.FromClient) {
			return
		}
		it := &pb.PatchItem{Cid: proto.String(r.PathValue("cid")), Mid: proto.String(r.PathValue("mid")), Timestamp: proto.Int64(body.Timestamp)}
		if recall {
			it.Recall = proto.Bool(true)
		} else {
			it.Data = proto.String(body.Message)
		}
		if _, ok := s.do(w, r, app, body.FromClient, &pb.GenericCommand{Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_modify.Enum(),
			PatchMessage: &pb.PatchCommand{Patches: []*pb.PatchItem{it}}}); !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"result": map[string]any{}})
	}
}

// deleteMessage implements DELETE .../messages/{mid}?timestamp=: the
// server's copy only (clients keep theirs, no push).
func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request, app *apps.App) {
	ts, ok := intParam(w, r, "timestamp", 0, 0, math.MaxInt64)
	if !ok {
		return
	}
	if err := s.cfg.Engine.DeleteMessage(r.Context(), app.ID, r.PathValue("cid"), r.PathValue("mid"), ts); err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// legacyHistory implements v1.1's GET /1.1/rtm/messages/history?convid=
// (+ max_ts exclusive upper bound, msgid, limit, reversed).
func (s *Server) legacyHistory(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	cid := convFromInternal(q.Get("convid"))
	if cid == "" {
		writeError(w, http.StatusBadRequest, 107, "convid is required (per-client and app-wide history are not supported)")
		return
	}
	limit, ok := intParam(w, r, "limit", 100, 0, 1000)
	if !ok {
		return
	}
	maxTs, ok := intParam(w, r, "max_ts", 0, 0, math.MaxInt64)
	if !ok {
		return
	}
	lm := &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(int32(limit))}
	if maxTs > 0 {
		lm.T, lm.Mid = proto.Int64(maxTs), proto.String(q.Get("msgid"))
	}
	if boolParam(r, "reversed") {
		lm.Direction = pb.LogsCommand_NEW.Enum()
	}
	s.writeHistory(w, r, app, lm)
}

// legacyDeleteMessage implements v1.1's DELETE /1.1/rtm/messages/logs
// ?convid=&msgid=&timestamp=.
func (s *Server) legacyDeleteMessage(w http.ResponseWriter, r *http.Request, app *apps.App) {
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err != nil || q.Get("convid") == "" || q.Get("msgid") == "" {
		writeError(w, http.StatusBadRequest, 107, "convid, msgid and timestamp are required")
		return
	}
	if err := s.cfg.Engine.DeleteMessage(r.Context(), app.ID, convFromInternal(q.Get("convid")), q.Get("msgid"), ts); err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// legacySend implements v1.1's POST /1.1/rtm/messages {"from_peer",
// "conv_id", "message", "transient" (default true)}: answers {}.
func (s *Server) legacySend(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body sendBody
	if !decodeBody(w, r, &body) {
		return
	}
	if body.ConvID == "" {
		writeError(w, http.StatusBadRequest, 107, "conv_id is required (to_peers of system conversations is not supported here)")
		return
	}
	s.send(w, r, app, body.ConvID, body, true)
}
