package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// maxBody bounds a server-side REST request body.
const maxBody = 1 << 20

// maxImportBody bounds an import request body (1000 messages of up to
// 5 KB each, JSON-escaped).
const maxImportBody = 16 << 20

// maxQueryWindow bounds limit and skip of a conversation query.
const maxQueryWindow = 100000

// maxClientIDs bounds the client ids of one members/mutes/moderation call.
const maxClientIDs = 500

// maxOnlineIDs bounds the ids of one online-status query (LeanCloud: 20).
const maxOnlineIDs = 20

// serverRoute is one call of LeanCloud's server REST API (v1.2 paths). Every
// route needs the master key and is served under both /1.2 and /1.1, so a
// back end moves by changing its base URL whatever version it hard-coded.
type serverRoute struct {
	method, path string
	h            masterHandler
}

// serverRoutes is the server API's route table (paths after the version
// prefix). System-conversation routes are added by their own file.
func (s *Server) serverRoutes() []serverRoute {
	return []serverRoute{
		{"POST", "/rtm/conversations", s.createConversation},
		{"GET", "/rtm/conversations", s.queryConversations(convNormal)},
		{"GET", "/rtm/chatrooms", s.queryConversations(convRoom)},
		{"GET", "/rtm/all-conversations", s.queryConversations(convAny)},
		{"GET", "/rtm/conversations/{cid}", s.getConversation},
		{"PUT", "/rtm/conversations/{cid}", s.updateConversation},
		{"DELETE", "/rtm/conversations/{cid}", s.deleteConversation},
		{"DELETE", "/rtm/chatrooms/{cid}", s.deleteConversation},
		{"POST", "/rtm/conversations/{cid}/members", s.members(pb.OpType_add)},
		{"DELETE", "/rtm/conversations/{cid}/members", s.members(pb.OpType_remove)},
		{"GET", "/rtm/conversations/{cid}/members", s.listMembers},
		{"POST", "/rtm/conversations/{cid}/mutes", s.mutes(true)},
		{"DELETE", "/rtm/conversations/{cid}/mutes", s.mutes(false)},
		{"GET", "/rtm/conversations/{cid}/mutes", s.listMutes},
		{"POST", "/rtm/conversations/{cid}/permanent-silenceds", s.silence(true)},
		{"DELETE", "/rtm/conversations/{cid}/permanent-silenceds", s.silence(false)},
		{"GET", "/rtm/conversations/{cid}/permanent-silenceds", s.listSilenced},
		{"POST", "/rtm/conversations/{cid}/temporary-silenceds", s.tempSilence},
		{"DELETE", "/rtm/conversations/{cid}/temporary-silenceds", s.tempSilence},
		{"POST", "/rtm/conversations/{cid}/blacklists", s.blacklist(true)},
		{"DELETE", "/rtm/conversations/{cid}/blacklists", s.blacklist(false)},
		{"GET", "/rtm/conversations/{cid}/blacklists", s.listBlacklist},
		{"POST", "/rtm/conversations/{cid}/member-infos", s.setRole},
		{"PUT", "/rtm/conversations/{cid}/member-infos/{info}", s.setRole},
		{"DELETE", "/rtm/conversations/{cid}/member-infos/{info}", s.resetRole},
		{"GET", "/rtm/conversations/{cid}/member-infos", s.listRoles},
		{"POST", "/rtm/conversations/{cid}/messages", s.sendMessage},
		{"GET", "/rtm/conversations/{cid}/messages", s.history},
		{"PUT", "/rtm/conversations/{cid}/messages/{mid}", s.patchMessage(false)},
		{"PUT", "/rtm/conversations/{cid}/messages/{mid}/recall", s.patchMessage(true)},
		{"DELETE", "/rtm/conversations/{cid}/messages/{mid}", s.deleteMessage},
		{"POST", "/rtm/chatrooms/{cid}/messages", s.sendMessage},
		{"GET", "/rtm/chatrooms/{cid}/messages", s.history},
		{"POST", "/rtm/clients/check-online", s.checkOnline},
		{"GET", "/rtm/clients/{client}/unread-count", s.unreadCount},
		{"POST", "/rtm/clients/{client}/kick", s.kick},

		// Import (an imcluster extension for migrations, see docs/migrate.md).
		{"POST", "/rtm/import/conversations", s.importConversations},
		{"POST", "/rtm/import/messages", s.importMessages},
		{"PUT", "/rtm/import/conversations/{cid}/unread", s.importUnread},
	}
}

// legacyRoutes are LeanCloud's v1.1-only calls, served under /1.1 alone.
func (s *Server) legacyRoutes() []serverRoute {
	return []serverRoute{
		{"GET", "/1.1/rtm/messages/history", s.legacyHistory},
		{"DELETE", "/1.1/rtm/messages/logs", s.legacyDeleteMessage},
		{"POST", "/1.1/rtm/messages", s.legacySend},
		{"GET", "/1.1/rtm/messages/unread/{client}", s.legacyUnread},
		{"GET", "/1.1/rtm/messages/unread/{client}/{cid}", s.legacyUnread},
		{"POST", "/1.1/rtm/online", s.legacyOnline},
		{"POST", "/1.1/rtm/client/kick", s.legacyKick},
		{"POST", "/1.1/rtm/conversation/blacklist", s.tempSilence},
		{"DELETE", "/1.1/rtm/conversation/blacklist", s.tempSilence},
	}
}

// routesServerAPI registers the server-side REST API.
func (s *Server) routesServerAPI() {
	for _, rt := range s.serverRoutes() {
		for _, prefix := range []string{"/1.2", "/1.1"} {
			s.mux.HandleFunc(rt.method+" "+prefix+rt.path, s.master(rt.h))
		}
	}
	for _, rt := range s.legacyRoutes() {
		s.mux.HandleFunc(rt.method+" "+rt.path, s.master(rt.h))
	}
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

// do runs one command for the app's back end (conversation.Caller.Server):
// clientID is the client it acts as (the sender of a message, the client
// whose mute changes), or empty for calls LeanCloud runs as the system
// (member, role and moderation changes: pushes carry an empty initBy).
// It writes the engine's error if any.
func (s *Server) do(w http.ResponseWriter, r *http.Request, app *apps.App, clientID string, cmd *pb.GenericCommand) (*pb.GenericCommand, bool) {
	if len(clientID) > 64 {
		writeError(w, http.StatusBadRequest, 107, "client ids must be at most 64 characters")
		return nil, false
	}
	resp, err := s.cfg.Engine.Handle(r.Context(), conversation.BackendCaller(app.ID, clientID), cmd)
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

// needClient checks a client id the call acts as.
func needClient(w http.ResponseWriter, name, id string) bool {
	if id == "" || len(id) > 64 {
		writeError(w, http.StatusBadRequest, 107, name+" must be 1-64 characters")
		return false
	}
	return true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBodyLimit(w, r, v, maxBody)
}

func decodeBodyLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, 107, "reading the body: "+err.Error())
		return false
	}
	if int64(len(body)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, 107, "body larger than "+strconv.FormatInt(limit, 10)+" bytes")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, 107, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

// clientIDs reads {"client_ids": [...]} from the body, or for DELETE also
// ?client_ids=a,b (some HTTP clients cannot send a DELETE body).
func clientIDs(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var ids []string
	if v := r.URL.Query().Get("client_ids"); r.Method == http.MethodDelete && v != "" {
		ids = strings.Split(v, ",")
	} else {
		var body struct {
			ClientIDs []string `json:"client_ids"`
			Members   []string `json:"members"` // before 1.2 parity
		}
		if !decodeBody(w, r, &body) {
			return nil, false
		}
		ids = append(body.ClientIDs, body.Members...)
	}
	if len(ids) == 0 || len(ids) > maxClientIDs {
		writeError(w, http.StatusBadRequest, 107, "client_ids must list 1-"+strconv.Itoa(maxClientIDs)+" client ids")
		return nil, false
	}
	for _, id := range ids {
		if id == "" || len(id) > 64 {
			writeError(w, http.StatusBadRequest, 107, "client ids must be 1-64 characters")
			return nil, false
		}
	}
	return ids, true
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int64) (int64, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, 107, name+" must be an integer in ["+strconv.FormatInt(lo, 10)+", "+strconv.FormatInt(hi, 10)+"]")
		return 0, false
	}
	return n, true
}

func boolParam(r *http.Request, name string) bool {
	v := r.URL.Query().Get(name)
	return v == "true" || v == "1"
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
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
