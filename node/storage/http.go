package storage

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// LeanCloud storage error codes used by the shim (the JSON "code" field).
const (
	codeInternal      = 1
	codeObjectMissing = 101
	codeInvalidJSON   = 107
	codeUsernameEmpty = 200
	codePasswordEmpty = 201
	codeUsernameTaken = 202
	codeBadPassword   = 210
	codeUserNotFound  = 211
	codeLoginLocked   = 219
	codeUnauthorized  = 401
	codeNotFound      = 404
	codeFileTooLarge  = 413
	codeTooMany       = 429
)

// storageFullMessage answers a write refused for a full disk (HTTP 507,
// code protocol.ErrStorageFull.Code, as the REST API answers it).
const storageFullMessage = "Storage full: " + protocol.DetailStorageFull + "."

// maxJSONBody bounds every JSON request body.
const maxJSONBody = 1 << 20

// request is what an authenticated handler gets.
type request struct {
	app    App
	master bool
	r      *http.Request
}

type appHandler func(w http.ResponseWriter, req request)

// app wraps h with LeanCloud's app authentication: X-LC-Id plus X-LC-Key or
// X-LC-Sign.
func (s *Service) app(h appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		app, ok := s.cfg.LookupApp(r.Header.Get("X-LC-Id"))
		if !ok {
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized.")
			return
		}
		master, ok := s.authenticate(app, r)
		if !ok {
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "Unauthorized.")
			return
		}
		h(w, request{app: app, master: master, r: r})
	}
}

// authenticate checks X-LC-Key or X-LC-Sign and reports whether the master
// key was used.
func (s *Service) authenticate(app App, r *http.Request) (master, ok bool) {
	return apps.AuthenticateREST(app.Key, app.MasterKey, r.Header.Get("X-LC-Key"), r.Header.Get("X-LC-Sign"),
		s.cfg.Now(), s.cfg.SignWindow)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// decodeBody reads a JSON object body into v, answering 400 on failure.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, codeInvalidJSON, "Request body is larger than 1 MiB.")
			return false
		}
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "Could not read the request body.")
		return false
	}
	if len(body) == 0 || json.Unmarshal(body, v) != nil {
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "Malformed json object. A json dictionary is expected.")
		return false
	}
	return true
}

type errorBody struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, errorBody{Code: code, Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// internalError logs err and answers 500, except for a write refused
// because the disk is low (the node's own store.ErrDiskLow, or the
// cluster's wire.ErrDiskLow when too few of the shard's replicas have space
// left): that is no server fault, nothing was stored, and the store already
// counts it, so it is answered 507 "storage full" (as the REST API answers
// a refused send) and not logged.
func (s *Service) internalError(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, store.ErrDiskLow) || errors.Is(err, wire.ErrDiskLow) {
		writeError(w, http.StatusInsufficientStorage, int(protocol.ErrStorageFull.Code), storageFullMessage)
		return
	}
	s.log.Error("Storage request failed", "op", op, "err", err)
	writeError(w, http.StatusInternalServerError, codeInternal, "Internal server error.")
}

// allowAccountRequest applies the app's per-address rate of sign-ups and
// logins (each costs a password hash); beyond it the answer is 429.
func (s *Service) allowAccountRequest(w http.ResponseWriter, req request) bool {
	if s.limitsOf(req.app).accounts.Allow(clientIP(req.r)) {
		return true
	}
	w.Header().Set("Retry-After", "60")
	writeError(w, http.StatusTooManyRequests, codeTooMany, fmt.Sprintf(
		"Too many sign-ups and logins from this address (limit %d per minute).", req.app.AccountRequestsPerMinutePerIP))
	return false
}

// clientIP is the host part of the request's remote address.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
