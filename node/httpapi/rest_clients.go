package httpapi

import (
	"net/http"
	"strconv"

	"github.com/imcluster/imcluster/node/apps"
)

// checkOnline implements POST /rtm/clients/check-online {"client_ids": [<=
// 20]}: {"results": [the online ones]} (unknown ids are offline).
func (s *Server) checkOnline(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientIDs []string `json:"client_ids"`
		Peers     []string `json:"peers"` // v1.1
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.writeOnline(w, app, append(body.ClientIDs, body.Peers...))
}

func (s *Server) writeOnline(w http.ResponseWriter, app *apps.App, ids []string) {
	if len(ids) == 0 || len(ids) > maxOnlineIDs {
		writeError(w, http.StatusBadRequest, 107, "client_ids must list 1-"+strconv.Itoa(maxOnlineIDs)+" client ids")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": nonNil(s.cfg.Presence.Online(app.ID, ids))})
}

// legacyOnline implements v1.1's POST /1.1/rtm/online {"peers": [...]}.
func (s *Server) legacyOnline(w http.ResponseWriter, r *http.Request, app *apps.App) {
	s.checkOnline(w, r, app)
}

// unreadCount implements GET /rtm/clients/{client}/unread-count?conv_id=:
// {"count": n}, n at most 100 per conversation; without conv_id the sum
// over the client's conversations (at most 500 of them).
func (s *Server) unreadCount(w http.ResponseWriter, r *http.Request, app *apps.App) {
	s.writeUnread(w, r, app, r.PathValue("client"), r.URL.Query().Get("conv_id"))
}

// legacyUnread implements v1.1's GET /1.1/rtm/messages/unread/{client}/{cid}.
func (s *Server) legacyUnread(w http.ResponseWriter, r *http.Request, app *apps.App) {
	s.writeUnread(w, r, app, r.PathValue("client"), r.PathValue("cid"))
}

func (s *Server) writeUnread(w http.ResponseWriter, r *http.Request, app *apps.App, clientID, cid string) {
	if !needClient(w, "client id", clientID) {
		return
	}
	var n int
	var err error
	if cid == "" {
		n, err = s.cfg.Engine.UnreadTotal(r.Context(), app.ID, clientID)
	} else {
		n, err = s.cfg.Engine.UnreadCount(r.Context(), app.ID, clientID, cid)
	}
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": n})
}

// maxKickReason bounds a kick's reason (LeanCloud: 20 characters).
const maxKickReason = 20

// kick implements POST /rtm/clients/{client}/kick {"reason"?}: every
// session of the client is closed with 4115 KICKED_BY_APP. Answers {}.
func (s *Server) kick(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 && !decodeBody(w, r, &body) {
		return
	}
	s.doKick(w, app, r.PathValue("client"), body.Reason)
}

func (s *Server) doKick(w http.ResponseWriter, app *apps.App, clientID, reason string) {
	if !needClient(w, "client id", clientID) {
		return
	}
	if len([]rune(reason)) > maxKickReason {
		writeError(w, http.StatusBadRequest, 107, "reason must be at most 20 characters")
		return
	}
	s.cfg.Kicker.Kick(app.ID, clientID)
	writeJSON(w, http.StatusOK, map[string]any{})
}

// legacyKick implements v1.1's POST /1.1/rtm/client/kick {"client_id",
// "reason"}.
func (s *Server) legacyKick(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ClientID string `json:"client_id"`
		Reason   string `json:"reason"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	s.doKick(w, app, body.ClientID, body.Reason)
}
