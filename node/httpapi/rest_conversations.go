package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Conversation types a query lists (LeanCloud splits them by path).
type convType int

const (
	convNormal convType = iota // rtm/conversations: neither tr nor sys
	convRoom                   // rtm/chatrooms: tr
	convAny                    // rtm/all-conversations
)

// typeFilter is the where clause a path adds to the caller's.
var typeFilter = map[convType]any{
	convNormal: map[string]any{"tr": false, "sys": map[string]any{"$ne": true}},
	convRoom:   map[string]any{"tr": true},
}

// createConversation implements POST /rtm/conversations: the body holds the
// record's columns (name, m, unique, custom columns; c or client_id names a
// creator, who then owns it and members get the join pushes of conv/start).
func (s *Server) createConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body map[string]any
	if !decodeBody(w, r, &body) {
		return
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	creator := str("c")
	if creator == "" {
		creator = str("client_id")
	}
	members, ok := stringList(body["m"])
	legacy, ok2 := stringList(body["members"])
	if !ok || !ok2 {
		writeError(w, http.StatusBadRequest, 107, "m must be an array of client ids")
		return
	}
	members = append(members, legacy...)
	if len(members) > maxClientIDs {
		writeError(w, http.StatusBadRequest, 107, "m lists too many client ids")
		return
	}
	unique, _ := body["unique"].(bool)
	cols := map[string]any{}
	if attrs, ok := body["attributes"].(map[string]any); ok { // before 1.2 parity
		maps.Copy(cols, attrs)
	}
	for k, v := range body {
		switch k {
		case "c", "client_id", "m", "members", "unique", "attributes", "tr", "sys", "transient":
		default:
			cols[k] = v
		}
	}
	if tr, _ := body["tr"].(bool); tr || body["transient"] == true {
		writeError(w, http.StatusBadRequest, 4316, "create chat rooms with conv/start from a client (tr is not supported here)")
		return
	}
	var cid string
	if creator != "" {
		data, err := jsonString(cols)
		if err != nil {
			writeError(w, http.StatusBadRequest, 107, "columns must be JSON")
			return
		}
		resp, ok := s.do(w, r, app, creator, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(),
			ConvMessage: &pb.ConvCommand{M: members, Unique: proto.Bool(unique), Attr: protocol.JSON(data)}})
		if !ok {
			return
		}
		cid = resp.GetConvMessage().GetCid()
	} else {
		in := conversation.ImportedConversation{Members: members, Unique: unique, Columns: cols}
		var err error
		if cid, err = s.cfg.Engine.CreateConversation(r.Context(), app.ID, in); err != nil {
			s.writeEngineError(w, err)
			return
		}
	}
	rec, ok := s.loadRecord(w, r, app, cid)
	if !ok {
		return
	}
	writeJSON(w, http.StatusCreated, rec)
}

// stringList converts a JSON array of strings; nil is an empty list.
func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok || s == "" || len(s) > 64 {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// queryConversations implements GET /rtm/conversations (and chatrooms,
// all-conversations): where, skip, limit (default 100, max 1000) and order
// as storage queries. Without where it lists every conversation of the
// type.
func (s *Server) queryConversations(t convType) masterHandler {
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		q := r.URL.Query()
		var where any = map[string]any{}
		if v := q.Get("where"); v != "" {
			if err := json.Unmarshal([]byte(v), &where); err != nil {
				writeError(w, http.StatusBadRequest, int(protocol.ErrConversationQueryFailed.Code), "where must be a JSON object: "+err.Error())
				return
			}
			if _, ok := where.(map[string]any); !ok {
				writeError(w, http.StatusBadRequest, int(protocol.ErrConversationQueryFailed.Code), "where must be a JSON object")
				return
			}
		}
		if f, ok := typeFilter[t]; ok {
			where = map[string]any{"$and": []any{where, f}}
		}
		data, _ := jsonString(where)
		cm := &pb.ConvCommand{Where: protocol.JSON(data)}
		order := q.Get("order")
		if order == "" {
			order = q.Get("sort")
		}
		if order != "" {
			cm.Sort = proto.String(order)
		}
		limit, ok := intParam(w, r, "limit", 100, 0, 1000)
		if !ok {
			return
		}
		skip, ok := intParam(w, r, "skip", 0, 0, maxQueryWindow)
		if !ok {
			return
		}
		cm.Limit, cm.Skip = proto.Int32(int32(limit)), proto.Int32(int32(skip))
		results, ok := s.runQuery(w, r, app, cm)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	}
}

// getConversation implements GET /rtm/conversations/{cid}: {"results":
// [record]}, empty when there is no such conversation.
func (s *Server) getConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	where, _ := jsonString(map[string]string{"objectId": r.PathValue("cid")})
	results, ok := s.runQuery(w, r, app, &pb.ConvCommand{Where: protocol.JSON(where), Limit: proto.Int32(1)})
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// loadRecord returns one conversation's record or answers 404 (4303).
func (s *Server) loadRecord(w http.ResponseWriter, r *http.Request, app *apps.App, cid string) (map[string]any, bool) {
	where, _ := jsonString(map[string]string{"objectId": cid})
	results, ok := s.runQuery(w, r, app, &pb.ConvCommand{Where: protocol.JSON(where), Limit: proto.Int32(1)})
	if !ok {
		return nil, false
	}
	if len(results) == 0 {
		writeError(w, http.StatusNotFound, int(protocol.ErrConversationNotFound.Code), "conversation "+cid+" not found")
		return nil, false
	}
	rec, _ := results[0].(map[string]any)
	return rec, true
}

func (s *Server) runQuery(w http.ResponseWriter, r *http.Request, app *apps.App, cm *pb.ConvCommand) ([]any, bool) {
	resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), ConvMessage: cm})
	if !ok {
		return nil, false
	}
	var results []any
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetResults().GetData()), &results); err != nil {
		s.writeEngineError(w, err)
		return nil, false
	}
	if results == nil {
		results = []any{}
	}
	return results, true
}

// updateConversation implements PUT /rtm/conversations/{cid}: the body's
// columns (any but m) change; members get conv/updated as for a client's
// update. Answers {"updatedAt", "objectId"}.
func (s *Server) updateConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body map[string]any
	if !decodeBody(w, r, &body) {
		return
	}
	initBy, _ := body["client_id"].(string)
	delete(body, "client_id")
	if _, ok := body["m"]; ok {
		writeError(w, http.StatusBadRequest, 107, "m cannot be updated here: use .../members")
		return
	}
	if len(body) == 0 {
		writeError(w, http.StatusBadRequest, 107, "the body must name at least one column to change")
		return
	}
	data, _ := jsonString(body)
	cid := r.PathValue("cid")
	resp, ok := s.do(w, r, app, initBy, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_update.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(data)}})
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"updatedAt": resp.GetConvMessage().GetUdate(), "objectId": cid,
		"attrModified": rawJSON(resp.GetConvMessage().GetAttrModified().GetData())})
}

// failures renders an engine's failedPids.
func failures(list []*pb.ErrorCommand) []map[string]any {
	out := []map[string]any{}
	for _, f := range list {
		out = append(out, map[string]any{"code": f.GetCode(), "error": f.GetReason(), "client_ids": nonNil(f.GetPids())})
	}
	return out
}

// members implements POST/DELETE /rtm/conversations/{cid}/members
// {"client_ids": [...]}: as conv/add and conv/remove by the system (the
// same pushes). Answers {"updatedAt", "objectId"} plus the ids that failed
// and why ("failed", an imcluster addition; blacklisted ids fail with 4548).
func (s *Server) members(op pb.OpType) masterHandler {
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		ids, ok := clientIDs(w, r)
		if !ok {
			return
		}
		cid := r.PathValue("cid")
		resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(),
			ConvMessage: &pb.ConvCommand{Cid: proto.String(cid), M: ids}})
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"updatedAt": resp.GetConvMessage().GetUdate(), "objectId": cid,
			"failed": failures(resp.GetConvMessage().GetFailedPids())})
	}
}

// listMembers implements GET /rtm/conversations/{cid}/members.
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request, app *apps.App) {
	resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_members.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: proto.String(r.PathValue("cid"))}})
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": nonNil(resp.GetConvMessage().GetM())})
}

// mutes implements POST/DELETE /rtm/conversations/{cid}/mutes: conv/mute
// or conv/unmute as each client (edits mu).
func (s *Server) mutes(mute bool) masterHandler {
	op := pb.OpType_unmute
	if mute {
		op = pb.OpType_mute
	}
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		ids, ok := clientIDs(w, r)
		if !ok {
			return
		}
		cid := r.PathValue("cid")
		var udate string
		for _, id := range ids {
			resp, ok := s.do(w, r, app, id, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(),
				ConvMessage: &pb.ConvCommand{Cid: proto.String(cid)}})
			if !ok {
				return
			}
			udate = resp.GetConvMessage().GetUdate()
		}
		writeJSON(w, http.StatusOK, map[string]any{"updatedAt": udate, "objectId": cid})
	}
}

// listMutes implements GET /rtm/conversations/{cid}/mutes.
func (s *Server) listMutes(w http.ResponseWriter, r *http.Request, app *apps.App) {
	rec, ok := s.loadRecord(w, r, app, r.PathValue("cid"))
	if !ok {
		return
	}
	mu, _ := rec["mu"].([]any)
	if mu == nil {
		mu = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": mu})
}

// silence implements POST/DELETE /rtm/conversations/{cid}/permanent-silenceds
// (the list conv/add_shutup edits; silenced senders get 4563).
func (s *Server) silence(add bool) masterHandler {
	op := pb.OpType_remove_shutup
	if add {
		op = pb.OpType_add_shutup
	}
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		ids, ok := clientIDs(w, r)
		if !ok {
			return
		}
		resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(),
			ConvMessage: &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), M: ids}})
		if !ok {
			return
		}
		writeListChange(w, resp.GetConvMessage().GetFailedPids())
	}
}

// writeListChange answers a moderation change: {} as LeanCloud, plus the
// ids that failed (an imcluster addition) when some did.
func writeListChange(w http.ResponseWriter, failed []*pb.ErrorCommand) {
	out := map[string]any{}
	if len(failed) > 0 {
		out["failed"] = failures(failed)
	}
	writeJSON(w, http.StatusOK, out)
}

// listPage reads limit (default 10, max 100) and next.
func listPage(w http.ResponseWriter, r *http.Request) (int32, string, bool) {
	limit, ok := intParam(w, r, "limit", 10, 1, 100)
	return int32(limit), r.URL.Query().Get("next"), ok
}

// listSilenced implements GET /rtm/conversations/{cid}/permanent-silenceds:
// {"client_ids": [...], "next"?}.
func (s *Server) listSilenced(w http.ResponseWriter, r *http.Request, app *apps.App) {
	limit, next, ok := listPage(w, r)
	if !ok {
		return
	}
	cm := &pb.ConvCommand{Cid: proto.String(r.PathValue("cid")), Limit: proto.Int32(limit)}
	if next != "" {
		cm.Next = proto.String(next)
	}
	resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query_shutup.Enum(), ConvMessage: cm})
	if !ok {
		return
	}
	writeIDPage(w, resp.GetConvMessage().GetM(), resp.GetConvMessage().GetNext())
}

func writeIDPage(w http.ResponseWriter, ids []string, next string) {
	out := map[string]any{"client_ids": nonNil(ids)}
	if next != "" {
		out["next"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

// blacklist implements POST/DELETE /rtm/conversations/{cid}/blacklists:
// blacklisted members are removed and cannot rejoin (4548).
func (s *Server) blacklist(block bool) masterHandler {
	op := pb.OpType_unblock
	if block {
		op = pb.OpType_block
	}
	return func(w http.ResponseWriter, r *http.Request, app *apps.App) {
		ids, ok := clientIDs(w, r)
		if !ok {
			return
		}
		resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_blacklist.Enum(), Op: op.Enum(),
			BlacklistMessage: &pb.BlacklistCommand{SrcCid: proto.String(r.PathValue("cid")), ToPids: ids}})
		if !ok {
			return
		}
		writeListChange(w, resp.GetBlacklistMessage().GetFailedPids())
	}
}

// listBlacklist implements GET /rtm/conversations/{cid}/blacklists.
func (s *Server) listBlacklist(w http.ResponseWriter, r *http.Request, app *apps.App) {
	limit, next, ok := listPage(w, r)
	if !ok {
		return
	}
	bm := &pb.BlacklistCommand{SrcCid: proto.String(r.PathValue("cid")), Limit: proto.Int32(limit)}
	if next != "" {
		bm.Next = proto.String(next)
	}
	resp, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_blacklist.Enum(), Op: pb.OpType_query.Enum(), BlacklistMessage: bm})
	if !ok {
		return
	}
	writeIDPage(w, resp.GetBlacklistMessage().GetBlockedPids(), resp.GetBlacklistMessage().GetNext())
}

// memberInfoID is the objectId of a _ConversationMemberInfo row.
func memberInfoID(cid, clientID string) string { return cid + ":" + clientID }

// infoClient returns the client of a member-info id of cid.
func infoClient(cid, info string) (string, bool) {
	id, ok := strings.CutPrefix(info, cid+":")
	return id, ok && id != ""
}

// setRole implements POST /rtm/conversations/{cid}/member-infos
// {"clientId", "role"} and PUT .../member-infos/{info} {"role"}: Member or
// Manager (the creator is the Owner and cannot change).
func (s *Server) setRole(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientID string `json:"clientId"`
		Role     string `json:"role"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	cid := r.PathValue("cid")
	if info := r.PathValue("info"); info != "" {
		id, ok := infoClient(cid, info)
		if !ok {
			writeError(w, http.StatusNotFound, 404, "no member info "+info+" in "+cid)
			return
		}
		body.ClientID = id
	}
	if !needClient(w, "clientId", body.ClientID) {
		return
	}
	s.changeRole(w, r, app, cid, body.ClientID, body.Role)
}

// resetRole implements DELETE .../member-infos/{info}: back to Member.
func (s *Server) resetRole(w http.ResponseWriter, r *http.Request, app *apps.App) {
	cid := r.PathValue("cid")
	id, ok := infoClient(cid, r.PathValue("info"))
	if !ok {
		writeError(w, http.StatusNotFound, 404, "no member info "+r.PathValue("info")+" in "+cid)
		return
	}
	s.changeRole(w, r, app, cid, id, "Member")
}

func (s *Server) changeRole(w http.ResponseWriter, r *http.Request, app *apps.App, cid, clientID, role string) {
	_, ok := s.do(w, r, app, "", &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_member_info_update.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: proto.String(cid), TargetClientId: proto.String(clientID),
			Info: &pb.ConvMemberInfo{Pid: proto.String(clientID), Role: proto.String(role)}}})
	if !ok {
		return
	}
	if r.Method == http.MethodDelete {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"objectId": memberInfoID(cid, clientID), "updatedAt": protocol.ISODate(nowMs())})
}

// listRoles implements GET .../member-infos?skip&limit&role.
func (s *Server) listRoles(w http.ResponseWriter, r *http.Request, app *apps.App) {
	skip, ok := intParam(w, r, "skip", 0, 0, maxQueryWindow)
	if !ok {
		return
	}
	limit, ok := intParam(w, r, "limit", 100, 1, 1000)
	if !ok {
		return
	}
	cid := r.PathValue("cid")
	members, err := s.cfg.Engine.ConversationMembers(r.Context(), app.ID, cid)
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	role := r.URL.Query().Get("role")
	results := []map[string]any{}
	for _, m := range members {
		if role != "" && m.Role != role {
			continue
		}
		results = append(results, map[string]any{"clientId": m.ClientID, "role": m.Role, "objectId": memberInfoID(cid, m.ClientID), "cid": cid})
	}
	results = results[min(int(skip), len(results)):]
	results = results[:min(int(limit), len(results))]
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// tempSilence implements POST .../temporary-silenceds {"client_id", "ttl"
// (seconds, at most 86400)} and DELETE ...?client_id=, and v1.1's
// POST/DELETE /1.1/rtm/conversation/blacklist (the same with conv_id):
// a silenced client's sends fail with 4315 until the ttl passes. Answers {}.
func (s *Server) tempSilence(w http.ResponseWriter, r *http.Request, app *apps.App) {
	cid, clientID := r.PathValue("cid"), r.URL.Query().Get("client_id")
	if cid == "" {
		cid = r.URL.Query().Get("conv_id")
	}
	var ttl time.Duration
	if r.Method == http.MethodPost {
		var body struct {
			ClientID string `json:"client_id"`
			ConvID   string `json:"conv_id"`
			TTL      int64  `json:"ttl"`
		}
		if !decodeBody(w, r, &body) {
			return
		}
		if cid == "" {
			cid = body.ConvID
		}
		clientID = body.ClientID
		if body.TTL < 1 || body.TTL > int64(conversation.MaxTempSilence.Seconds()) {
			writeError(w, http.StatusBadRequest, 107, "ttl must be 1-86400 seconds")
			return
		}
		ttl = time.Duration(body.TTL) * time.Second
	}
	if cid == "" {
		writeError(w, http.StatusBadRequest, 107, "conv_id is required")
		return
	}
	if !needClient(w, "client_id", clientID) {
		return
	}
	if err := s.cfg.Engine.TempSilence(r.Context(), app.ID, cid, clientID, ttl); err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// deleteConversation implements DELETE /rtm/conversations/{cid} (and
// /rtm/chatrooms/{cid}): the conversation is gone for everybody, without
// pushes. Answers {}.
func (s *Server) deleteConversation(w http.ResponseWriter, r *http.Request, app *apps.App) {
	if err := s.cfg.Engine.DeleteConversation(r.Context(), app.ID, r.PathValue("cid")); err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
