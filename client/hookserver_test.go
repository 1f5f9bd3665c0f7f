package client_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/hooks"
)

const hookSecret = "hook-secret"

// hookCall is one request the hook server received.
type hookCall struct {
	Hook   string // function name, or the path for other webhooks
	Params map[string]any
	Body   json.RawMessage
}

// hookServer is a real HTTP hook server on 127.0.0.1:0: it checks every
// request's signature (401 otherwise, and the test fails), records it and
// answers with answer(hook, params) as {"result": ...}.
type hookServer struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []hookCall
	answer func(hook string, params map[string]any) any
	notify chan struct{}
}

func startHookServer(t testing.TB, answer func(hook string, params map[string]any) any) *hookServer {
	t.Helper()
	hs := &hookServer{t: t, answer: answer, notify: make(chan struct{}, 1)}
	hs.srv = httptest.NewServer(http.HandlerFunc(hs.serve))
	t.Cleanup(hs.srv.Close)
	return hs
}

func (hs *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := hooks.Verify(hookSecret, r.Header, body, time.Now(), time.Minute); err != nil ||
		r.Header.Get("X-LC-Hook-Key") != hookSecret || r.Header.Get("X-LC-Id") != apps.DevAppID {
		hs.t.Errorf("hook request %s with bad signature: %v", r.URL.Path, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	name := r.URL.Path
	if fn, ok := strings.CutPrefix(r.URL.Path, "/1.1/functions/"); ok {
		name = fn
	}
	var params map[string]any
	_ = json.Unmarshal(body, &params)
	hs.mu.Lock()
	hs.calls = append(hs.calls, hookCall{Hook: name, Params: params, Body: body})
	answer := hs.answer
	hs.mu.Unlock()
	select {
	case hs.notify <- struct{}{}:
	default:
	}
	var result any
	if answer != nil {
		result = answer(name, params)
	}
	if status, ok := result.(int); ok {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"result": result})
}

func (hs *hookServer) setAnswer(f func(hook string, params map[string]any) any) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.answer = f
}

// waitCall waits for a call of hook matching match.
func (hs *hookServer) waitCall(hook string, match func(hookCall) bool) hookCall {
	hs.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs.mu.Lock()
		for _, c := range hs.calls {
			if c.Hook == hook && (match == nil || match(c)) {
				hs.mu.Unlock()
				return c
			}
		}
		hs.mu.Unlock()
		if time.Now().After(deadline) {
			hs.t.Fatalf("no %s hook call within 10s", hook)
		}
		select {
		case <-hs.notify:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (hs *hookServer) count(hook string) int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	n := 0
	for _, c := range hs.calls {
		if c.Hook == hook {
			n++
		}
	}
	return n
}

// devAppWithHooks is the development app calling hs.
func devAppWithHooks(hs *hookServer, mod func(*apps.Hooks)) apps.App {
	app := apps.Dev()
	app.Hooks = &apps.Hooks{URL: hs.srv.URL, Secret: hookSecret, SysMessageURL: hs.srv.URL + "/sys"}
	if mod != nil {
		mod(app.Hooks)
	}
	return app
}
