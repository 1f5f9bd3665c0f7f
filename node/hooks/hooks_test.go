package hooks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/apps"
)

// counter reads a counter of reg by name and label values.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

var testReg *prometheus.Registry

func newTestHooks(t *testing.T, h http.Handler, mod func(*apps.Hooks)) *Hooks {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	app := apps.Dev()
	app.Hooks = &apps.Hooks{URL: srv.URL, Secret: "s"}
	if mod != nil {
		mod(app.Hooks)
	}
	reg, err := apps.NewRegistry([]apps.App{app})
	if err != nil {
		t.Fatal(err)
	}
	testReg = prometheus.NewRegistry()
	hk, err := New(Config{Apps: reg, Registerer: testReg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hk.Stop)
	return hk
}

func TestHooksCallSignedAndAnswers(t *testing.T) {
	hk := newTestHooks(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		if err := Verify("s", r.Header, body, time.Now(), time.Minute); err != nil || r.URL.Path != "/1.1/functions/_messageReceived" ||
			!strings.Contains(string(body), `"__sign"`) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"result":{"drop":true}}`))
	}), nil)
	res, err := hk.Call(context.Background(), apps.DevAppID, "_messageReceived", map[string]any{"content": "x"})
	if err != nil || res["drop"] != true {
		t.Fatalf("call = %v, %v", res, err)
	}
	if _, err := hk.Call(context.Background(), "other-app", "_messageReceived", nil); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("unknown app: %v", err)
	}
}

func TestHooksVerifyRejects(t *testing.T) {
	now := time.Now()
	ts := "1700000000000"
	h := http.Header{}
	h.Set("X-LC-Hook-Timestamp", ts)
	h.Set("X-LC-Hook-Signature", Sign("s", ts, []byte("body")))
	at := time.UnixMilli(1_700_000_000_000)
	if err := Verify("s", h, []byte("body"), at, time.Minute); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, err := range map[string]error{
		"tampered body": Verify("s", h, []byte("bodY"), at, time.Minute),
		"wrong secret":  Verify("t", h, []byte("body"), at, time.Minute),
		"old":           Verify("s", h, []byte("body"), now, time.Minute),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestHooksBounded: with every call slot taken, a further call fails within its timeout ("busy"), and notifications beyond
// the queue are dropped and counted instead of blocking.
func TestHooksBounded(t *testing.T) {
	release := make(chan struct{})
	hk := newTestHooks(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), func(h *apps.Hooks) { h.Concurrency, h.QueueSize, h.TimeoutMs, h.NotifyTimeoutMs = 1, 2, 300, 5000 })
	defer close(release)
	// Another call holds the only slot.
	hk.state(apps.DevAppID).calls <- struct{}{}
	start := time.Now()
	_, err := hk.Call(context.Background(), apps.DevAppID, "_conversationStart", nil)
	if err == nil || !strings.Contains(err.Error(), "in flight") || time.Since(start) > 2*time.Second {
		t.Fatalf("call without a free slot: %v after %v", err, time.Since(start))
	}
	if got := counter(t, testReg, "imnode_hook_calls_total", "_conversationStart", "busy"); got != 1 {
		t.Fatalf("busy calls = %v", got)
	}
	// One worker is busy with the first notification, two wait in the
	// queue, the rest are dropped at once.
	start = time.Now()
	for range 10 {
		hk.Notify(apps.DevAppID, "_messageSent", map[string]any{})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Notify blocked for %v", d)
	}
	if got := counter(t, testReg, "imnode_hook_dropped_total", "_messageSent"); got < 7 {
		t.Fatalf("dropped = %v, want >= 7", got)
	}
}
