// Package hooks calls an app's server hooks: HTTP webhooks with
// LeanEngine's contract (LeanCloud's IM hooks, docs/hooks.md), the
// system-conversation message webhook and the push webhook.
//
// Every request is signed: X-LC-Hook-Key carries the app's hook secret (what
// LeanEngine SDKs check), X-LC-Hook-Timestamp the send time in ms and
// X-LC-Hook-Signature "v1=" + hex(HMAC-SHA256(secret, timestamp + "." +
// body)), which a receiver checks without trusting the transport; X-LC-Sign
// is md5(timestamp + masterKey),timestamp,master as LeanEngine's header
// middleware expects, and the body carries LeanEngine's legacy __sign.
//
// Per app, at most Concurrency blocking calls and Concurrency notification
// calls are in flight; a blocking call that cannot start within its timeout
// fails (and then follows the hook's failure policy). Notifications wait in
// a bounded per-app queue and are dropped, counted, when it is full. So a
// slow or dead hook server costs its own app at most the hook timeout per
// operation and never holds a conversation lock (the engine calls hooks
// before taking one).
package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // LeanEngine's X-LC-Sign format
	"crypto/sha1" //nolint:gosec // LeanEngine's legacy __sign format
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/apps"
)

// ErrNotConfigured is returned by Call for a hook the app does not have.
var ErrNotConfigured = errors.New("hooks: hook not configured")

// maxAnswer bounds a hook's answer body.
const maxAnswer = 1 << 20

// Config configures Hooks.
type Config struct {
	// Apps resolves app ids to their hook settings. Required.
	Apps *apps.Registry
	// Client sends the requests. Zero value means a client of its own.
	Client *http.Client
	// Clock returns the current time. Zero value means time.Now.
	Clock func() time.Time
	// Logger is the parent logger. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Zero value means not registered.
	Registerer prometheus.Registerer
}

// Hooks calls apps' hooks. Safe for concurrent use; Start before use, Stop
// to end the notification workers.
type Hooks struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// mu guards apps and stopped (a leaf lock, node/LOCKING.md).
	mu      sync.Mutex
	apps    map[string]*appState
	stopped bool

	ctx    context.Context //nolint:containedctx // the owner's lifetime: Stop cancels every call in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// appState is one app's concurrency bound and notification queue.
type appState struct {
	hooks *apps.Hooks
	app   *apps.App
	calls chan struct{} // semaphore of blocking calls
	queue chan job
}

// job is one queued notification.
type job struct {
	url  string
	hook string // "" for the system-conversation and push webhooks
	body any
	// retries is how many more times a failed send is tried (with
	// back-off); 0 = once.
	retries int
	done    func(error)
}

// New creates Hooks.
func New(cfg Config) (*Hooks, error) {
	if cfg.Apps == nil {
		return nil, errors.New("hooks: Apps is required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hooks{cfg: cfg, log: cfg.Logger.With("component", "hooks"), metrics: m, apps: map[string]*appState{},
		ctx: ctx, cancel: cancel}, nil
}

// Stop stops the notification workers (queued notifications are dropped)
// and waits for them.
func (h *Hooks) Stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// state returns app's state, starting its workers on first use; nil when
// the app has no hooks or Hooks stopped.
func (h *Hooks) state(appID string) *appState {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.apps[appID]; ok || h.stopped {
		return s
	}
	app, ok := h.cfg.Apps.Lookup(appID)
	if !ok || app.Hooks == nil {
		h.apps[appID] = nil
		return nil
	}
	s := &appState{hooks: app.Hooks, app: app, calls: make(chan struct{}, app.Hooks.Workers()),
		queue: make(chan job, app.Hooks.Queue())}
	h.apps[appID] = s
	for range app.Hooks.Workers() {
		h.wg.Go(func() { h.worker(s) })
	}
	return s
}

// Has reports whether app has hook configured.
func (h *Hooks) Has(appID, hook string) bool {
	app, ok := h.cfg.Apps.Lookup(appID)
	return ok && app.Hooks.Has(hook)
}

// FailClosed reports whether a failure of hook rejects the operation.
func (h *Hooks) FailClosed(appID, hook string) bool {
	app, ok := h.cfg.Apps.Lookup(appID)
	if !ok || app.Hooks == nil {
		return false
	}
	return slices.Contains(app.Hooks.FailClosed, hook)
}

// Call runs a blocking hook and returns its result object (nil for null,
// true or {}). Any failure (no free slot or no answer within the timeout,
// non-200, undecodable answer) is an error; ErrNotConfigured when the app
// lacks the hook.
func (h *Hooks) Call(ctx context.Context, appID, hook string, params map[string]any) (map[string]any, error) {
	s := h.state(appID)
	if s == nil || !s.hooks.Has(hook) {
		return nil, ErrNotConfigured
	}
	ctx, cancel := context.WithTimeout(ctx, s.hooks.Timeout())
	defer cancel()
	start := h.cfg.Clock()
	select {
	case s.calls <- struct{}{}:
	case <-ctx.Done():
		h.metrics.observe(hook, "busy", start, h.cfg.Clock())
		return nil, fmt.Errorf("hooks: %s: %d calls in flight: %w", hook, cap(s.calls), ctx.Err())
	}
	defer func() { <-s.calls }()
	raw, err := h.post(ctx, s, s.hooks.URL+"/1.1/functions/"+hook, hook, params)
	if err != nil {
		h.metrics.observe(hook, "error", start, h.cfg.Clock())
		return nil, err
	}
	var ans struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		h.metrics.observe(hook, "error", start, h.cfg.Clock())
		return nil, fmt.Errorf("hooks: %s: answer is not {\"result\": ...}: %w", hook, err)
	}
	h.metrics.observe(hook, "ok", start, h.cfg.Clock())
	var out map[string]any
	if json.Unmarshal(ans.Result, &out) != nil {
		return nil, nil // true, null, a string: no change
	}
	return out, nil
}

// Notify queues a notification hook; it never blocks. Dropped (and
// counted) when the app's queue is full.
func (h *Hooks) Notify(appID, hook string, params map[string]any) {
	s := h.state(appID)
	if s == nil || !s.hooks.Has(hook) {
		return
	}
	h.enqueue(s, job{url: s.hooks.URL + "/1.1/functions/" + hook, hook: hook, body: params})
}

// enqueue queues j or drops it.
func (h *Hooks) enqueue(s *appState, j job) bool {
	select {
	case s.queue <- j:
		return true
	default:
		name := j.hook
		if name == "" {
			name = "webhook"
		}
		h.metrics.dropped.WithLabelValues(name).Inc()
		h.log.Warn("Hook queue full, dropping", "app", s.app.ID, "hook", name)
		if j.done != nil {
			j.done(errors.New("hooks: queue full"))
		}
		return false
	}
}

// worker sends app s's queued notifications until Stop.
func (h *Hooks) worker(s *appState) {
	for {
		select {
		case <-h.ctx.Done():
			return
		case j := <-s.queue:
			h.send(s, j)
		}
	}
}

// send posts one queued job, retrying with back-off (1 s, 2 s, ...).
func (h *Hooks) send(s *appState, j job) {
	name := j.hook
	if name == "" {
		name = "webhook"
	}
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		start := h.cfg.Clock()
		ctx, cancel := context.WithTimeout(h.ctx, s.hooks.NotifyTimeout())
		_, err := h.post(ctx, s, j.url, j.hook, j.body)
		cancel()
		if err == nil {
			h.metrics.observe(name, "ok", start, h.cfg.Clock())
			if j.done != nil {
				j.done(nil)
			}
			return
		}
		h.metrics.observe(name, "error", start, h.cfg.Clock())
		if attempt >= j.retries || h.ctx.Err() != nil {
			h.log.Warn("Hook notification failed", "app", s.app.ID, "hook", name, "err", err)
			if j.done != nil {
				j.done(err)
			}
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-h.ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff *= 2
	}
}

// post sends one signed request and returns the 2xx answer body.
func (h *Hooks) post(ctx context.Context, s *appState, url, hook string, body any) ([]byte, error) {
	now := h.cfg.Clock().UnixMilli()
	ts := strconv.FormatInt(now, 10)
	if params, ok := body.(map[string]any); ok && hook != "" {
		mac := hmac.New(sha1.New, []byte(s.app.MasterKey))
		mac.Write([]byte(hook + ":" + ts))
		withSign := make(map[string]any, len(params)+1)
		maps.Copy(withSign, params)
		withSign["__sign"] = ts + "," + hex.EncodeToString(mac.Sum(nil))
		body = withSign
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("hooks: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	sum := md5.Sum([]byte(ts + s.app.MasterKey)) //nolint:gosec // LeanEngine's X-LC-Sign format
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-LC-Id", s.app.ID)
	req.Header.Set("X-LC-Sign", hex.EncodeToString(sum[:])+","+ts+",master")
	req.Header.Set("X-LC-Prod", "1")
	req.Header.Set("X-LC-Hook-Key", s.hooks.Secret)
	req.Header.Set("X-LC-Hook-Timestamp", ts)
	req.Header.Set("X-LC-Hook-Signature", Sign(s.hooks.Secret, ts, data))
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("hooks: %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("hooks: %s: read answer: %w", url, err)
	}
	if len(raw) > maxAnswer {
		return nil, fmt.Errorf("hooks: %s: answer over %d bytes", url, maxAnswer)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("hooks: %s: HTTP %d: %.200s", url, resp.StatusCode, raw)
	}
	return raw, nil
}

// Sign returns the X-LC-Hook-Signature of a request body sent at ts (ms,
// decimal): "v1=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's signature headers against secret and rejects
// timestamps further than window from now. For hook servers written in Go
// (and the tests).
func Verify(secret string, header http.Header, body []byte, now time.Time, window time.Duration) error {
	ts := header.Get("X-LC-Hook-Timestamp")
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("hooks: missing or bad X-LC-Hook-Timestamp")
	}
	if d := now.Sub(time.UnixMilli(ms)); d > window || d < -window {
		return errors.New("hooks: timestamp outside the window")
	}
	if !hmac.Equal([]byte(header.Get("X-LC-Hook-Signature")), []byte(Sign(secret, ts, body))) {
		return errors.New("hooks: bad signature")
	}
	return nil
}
