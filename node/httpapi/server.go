package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/session"
)

// Engine is the conversation layer as the REST API uses it.
type Engine interface {
	Handle(ctx context.Context, c conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)
	Notifications(ctx context.Context, app, clientID string, startTs int64, limit int) ([]conversation.Notification, bool, error)
	ConversationMembers(ctx context.Context, app, cid string) ([]conversation.MemberInfo, error)
	UnreadCount(ctx context.Context, app, clientID, cid string) (int, error)
	UnreadTotal(ctx context.Context, app, clientID string) (int, error)
	DeleteMessage(ctx context.Context, app, cid, mid string, ts int64) error
	CreateConversation(ctx context.Context, app string, in conversation.ImportedConversation) (string, error)
	ImportConversation(ctx context.Context, app string, in conversation.ImportedConversation) (bool, error)
	ImportMessages(ctx context.Context, app, cid string, msgs []conversation.ImportedMessage) (int, error)
	SetUnread(ctx context.Context, app, cid string, unread map[string]int) error
	TempSilence(ctx context.Context, app, cid, clientID string, ttl time.Duration) error
	DeleteConversation(ctx context.Context, app, cid string) error
}

// Storage is the storage-REST shim.
type Storage interface {
	Handler() http.Handler
	UserBySessionToken(ctx context.Context, appID, token string) (string, error)
}

// Presence answers which clients are online anywhere in the cluster.
type Presence interface {
	Online(app string, clientIDs []string) []string
}

// Kicker forces clients offline.
type Kicker interface {
	Kick(app, clientID string) int
}

// Config configures the REST endpoints.
type Config struct {
	Apps    *apps.Registry
	Tokens  *session.Tokens
	Engine  Engine
	Storage Storage
	Kicker  Kicker
	// Presence answers the server API's online-status queries.
	Presence Presence
	// PublicURL is the WebSocket URL handed out by /v1/route. Zero value
	// derives it from the request.
	PublicURL string
	// HostAllowed reports whether the request's Host may be used to derive
	// the /v1/route URL when PublicURL is unset. Nil means any Host.
	HostAllowed func(host string) bool
	// Logger is the component logger. Zero value means slog.Default().
	Logger *slog.Logger
}

// corsHeaders are the request headers the LeanCloud SDKs send.
const corsHeaders = "Content-Type, Cache-Control, X-LC-Id, X-LC-Key, X-LC-Sign, X-LC-Session, X-LC-UA, X-LC-IM-Session-Token, X-LC-Prod"

// Server serves the client port's HTTP endpoints.
type Server struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New builds the REST handler tree.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	s.mux.HandleFunc("GET /v1/route", s.route)
	s.mux.HandleFunc("POST /1.1/rtm/sign", s.withApp(s.sign))
	s.mux.HandleFunc("GET /1.1/rtm/notifications", s.withApp(s.notifications))
	s.mux.HandleFunc("GET /1.1/classes/_ConversationMemberInfo", s.withApp(s.memberInfo))
	s.routesServerAPI()
	s.routesSysConv()
	if cfg.Storage != nil {
		s.mux.Handle("/1.1/", cfg.Storage.Handler())
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, 404, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s
}

// ServeHTTP answers CORS preflights (browser SDKs call these endpoints
// cross-origin) and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	if r.Method == http.MethodOptions {
		// Allow whatever headers the SDK's request carries (the storage SDK
		// sends Cache-Control on uploads, others X-LC-*): these endpoints
		// authenticate by their own headers, not by cookies.
		allow := r.Header.Get("Access-Control-Request-Headers")
		if allow == "" {
			allow = corsHeaders
		}
		h.Set("Access-Control-Allow-Headers", allow)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	s.mux.ServeHTTP(w, r)
}

// appHandler is a handler that runs for an authenticated app.
type appHandler func(w http.ResponseWriter, r *http.Request, app *apps.App, master bool)

// withApp authenticates X-LC-Id plus X-LC-Key or X-LC-Sign
// (apps.AuthenticateREST).
func (s *Server) withApp(h appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		appID := r.Header.Get("X-LC-Id")
		app, ok := s.cfg.Apps.Lookup(appID)
		if !ok {
			writeError(w, http.StatusUnauthorized, 401, "unknown app (X-LC-Id)")
			return
		}
		master, ok := apps.AuthenticateREST(app.Key, app.MasterKey, r.Header.Get("X-LC-Key"), r.Header.Get("X-LC-Sign"),
			time.Now(), apps.RESTSignWindow)
		if !ok {
			writeError(w, http.StatusUnauthorized, 401, "unauthorized: wrong X-LC-Key or X-LC-Sign")
			return
		}
		h(w, r, app, master)
	}
}

// writeError writes LeanCloud's JSON error shape.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "error": msg})
}

// writeEngineError maps an engine error to HTTP: protocol errors keep their
// code and reason, anything else is logged and answered 500.
func (s *Server) writeEngineError(w http.ResponseWriter, err error) {
	if pe, ok := errors.AsType[*protocol.Error](err); ok {
		status := http.StatusBadRequest
		switch pe.Code {
		case protocol.ErrConversationNotFound.Code, protocol.ErrMessageNotFound.Code:
			status = http.StatusNotFound
		case protocol.ErrInvalidMessagingTarget.Code, protocol.ErrConversationLogRejected.Code,
			protocol.ErrOperationUnauthorized.Code, protocol.ErrConversationUpdateRejected.Code:
			status = http.StatusForbidden
		}
		if pe.Temporary {
			status = http.StatusServiceUnavailable
		}
		if pe.Code == protocol.ErrStorageFull.Code && pe.Detail == protocol.DetailStorageFull {
			status = http.StatusInsufficientStorage
		}
		msg := pe.Reason
		if pe.Detail != "" {
			msg += ": " + pe.Detail
		}
		writeError(w, status, int(pe.Code), msg)
		return
	}
	s.log.Error("REST request failed", "err", err)
	writeError(w, http.StatusInternalServerError, int(protocol.ErrInternal.Code), "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "Tom & Jerry", not "Tom \u0026 Jerry", as LeanCloud answers
	_ = enc.Encode(v)
}
