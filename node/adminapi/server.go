package adminapi

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// RequireToken wraps next so that every request must carry
// "Authorization: Bearer <token>", except GET of /healthz, /readyz and
// /metrics: kubelet probes and Prometheus scrapes carry no token, and those
// paths reveal nothing but liveness and counters (no ids, no content). An
// empty token disables the check (insecure mode only: the node refuses to
// start without a token otherwise).
func RequireToken(token string, next http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && !openPath(r) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="imnode admin"`)
				WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// openPath reports whether r may be served without the token.
func openPath(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case PathHealthz, PathReadyz, PathMetrics:
		return true
	}
	return false
}

// WriteJSON writes v as a JSON answer with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes an ErrorResponse with status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, ErrorResponse{Error: msg})
}
