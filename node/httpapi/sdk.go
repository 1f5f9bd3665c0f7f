package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/session"
)

// RouteTTL is the lifetime of a /v1/route answer in the SDK's cache.
const RouteTTL = time.Hour

// maxNotifications bounds one /1.1/rtm/notifications page.
const maxNotifications = 100

// route implements GET /v1/route (spec 1.1): where to open the WebSocket.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.cfg.Apps.Lookup(r.URL.Query().Get("appId")); !ok {
		writeError(w, http.StatusNotFound, 4100, "unknown appId")
		return
	}
	url := s.cfg.PublicURL
	if url == "" && s.cfg.HostAllowed != nil && !s.cfg.HostAllowed(r.Host) {
		writeError(w, http.StatusBadRequest, 107, "the Host header names no host this node serves (--allowed-hosts); set --public-url")
		return
	}
	if url == "" {
		scheme := "ws"
		if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
			scheme = "wss"
		}
		url = scheme + "://" + r.Host
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": url, "secondary": url, "ttl": int(RouteTTL.Seconds())})
}

// sign implements POST /1.1/rtm/sign: a login signature for a storage
// user's session token; the user's objectId is the client id. On an app
// with LoginSignature it signs only when the app enables SignStorageLogins:
// anyone with the appKey can create a storage user, so otherwise the
// endpoint would let anyone past the app's login signatures.
func (s *Server) sign(w http.ResponseWriter, r *http.Request, app *apps.App, _ bool) {
	if app.LoginSignature && !app.SignStorageLogins {
		writeError(w, http.StatusForbidden, int(protocol.ErrSignatureFailed.Code),
			"this app requires login signatures from its own back end (signStorageLogins is off)")
		return
	}
	var body struct {
		SessionToken string `json:"session_token"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil || body.SessionToken == "" {
		writeError(w, http.StatusBadRequest, 107, "body must be JSON with session_token")
		return
	}
	if s.cfg.Storage == nil {
		writeError(w, http.StatusNotFound, 211, "user login is not enabled")
		return
	}
	userID, err := s.cfg.Storage.UserBySessionToken(r.Context(), app.ID, body.SessionToken)
	if err != nil || userID == "" {
		writeError(w, http.StatusBadRequest, 211, "could not find user for session_token")
		return
	}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	ts := time.Now().UnixMilli()
	writeJSON(w, http.StatusOK, map[string]any{
		"signature": app.Sign(apps.LoginMessage(app.ID, userID, ts, nonce)),
		"timestamp": ts,
		"nonce":     nonce,
		"client_id": userID,
	})
}

// clientAuth checks the session token header of a client-scoped endpoint.
func (s *Server) clientAuth(w http.ResponseWriter, r *http.Request, app *apps.App, master bool) (string, bool) {
	clientID := r.URL.Query().Get("client_id")
	if clientID == "" {
		writeError(w, http.StatusBadRequest, 107, "client_id is required")
		return "", false
	}
	if master {
		return clientID, true
	}
	_, err := s.cfg.Tokens.Validate(app.ID, clientID, r.Header.Get("X-LC-IM-Session-Token"))
	if errors.Is(err, session.ErrInvalidToken) {
		writeError(w, http.StatusUnauthorized, 4112, "SESSION_TOKEN_EXPIRED")
		return "", false
	}
	if err != nil {
		s.writeEngineError(w, err)
		return "", false
	}
	return clientID, true
}

// notifications implements GET /1.1/rtm/notifications (spec 1.9.3): the JS
// shape with notification_type=permanent, the Swift shape otherwise.
func (s *Server) notifications(w http.ResponseWriter, r *http.Request, app *apps.App, master bool) {
	clientID, ok := s.clientAuth(w, r, app, master)
	if !ok {
		return
	}
	q := r.URL.Query()
	start, err := parseInt(q.Get("start_ts"))
	if err != nil {
		writeError(w, http.StatusBadRequest, 107, "start_ts must be a number of milliseconds")
		return
	}
	limit := maxNotifications
	if v := q.Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < limit {
			limit = n
		}
	}
	items, more, err := s.cfg.Engine.Notifications(r.Context(), app.ID, clientID, start, limit)
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	list := make([]map[string]any, 0, len(items))
	js := q.Get("notification_type") == "permanent"
	for _, n := range items {
		if js {
			list = append(list, n.JSMap())
		} else {
			list = append(list, n.SwiftMap())
		}
	}
	if js {
		writeJSON(w, http.StatusOK, map[string]any{"notifications": list, "hasMore": more})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"permanent": map[string]any{"notifications": list, "hasMore": more},
		"droppable": map[string]any{"notifications": []any{}, "invalidLocalConvCache": false},
	})
}

// memberInfo implements GET /1.1/classes/_ConversationMemberInfo.
func (s *Server) memberInfo(w http.ResponseWriter, r *http.Request, app *apps.App, master bool) {
	if _, ok := s.clientAuth(w, r, app, master); !ok {
		return
	}
	var where struct {
		Cid string `json:"cid"`
	}
	if err := json.Unmarshal([]byte(r.URL.Query().Get("where")), &where); err != nil || where.Cid == "" {
		writeError(w, http.StatusBadRequest, 107, `where must be {"cid": "<conversation id>"}`)
		return
	}
	members, err := s.cfg.Engine.ConversationMembers(r.Context(), app.ID, where.Cid)
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	results := make([]map[string]any, 0, len(members))
	for _, m := range members {
		results = append(results, map[string]any{"cid": m.Cid, "clientId": m.ClientID, "role": m.Role, "objectId": m.Cid + ":" + m.ClientID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
