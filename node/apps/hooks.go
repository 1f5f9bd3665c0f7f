package apps

import (
	"fmt"
	"net/url"
	"slices"
	"time"
)

// HookNames are the server hooks an app may receive (LeanCloud's names; see
// docs/hooks.md).
var HookNames = []string{
	"_messageReceived", "_receiversOffline", "_messageSent", "_messageUpdate",
	"_conversationStart", "_conversationStarted", "_conversationAdd", "_conversationAdded",
	"_conversationRemove", "_conversationRemoved", "_conversationUpdate",
	"_clientOnline", "_clientOffline",
}

// Hook limits and defaults.
const (
	DefaultHookTimeout       = 3 * time.Second
	DefaultHookNotifyTimeout = 3 * time.Second
	// MaxHookTimeout keeps a blocking hook well inside the cluster's
	// forwarding timeout and the SDKs' command timeouts (20 s and more).
	MaxHookTimeout         = 8 * time.Second
	DefaultHookConcurrency = 16
	MaxHookConcurrency     = 256
	DefaultHookQueue       = 1000
	MaxHookQueue           = 100000
)

// Hooks configures an app's server hooks: HTTP webhooks following
// LeanEngine's contract (POST <URL>/1.1/functions/<hook name>, the
// parameters as a JSON object, the answer as {"result": ...}).
type Hooks struct {
	// URL is the base URL of the hook server (http or https).
	URL string `json:"url"`
	// Secret signs every request (X-LC-Hook-Key and
	// X-LC-Hook-Signature). Required with URL.
	Secret string `json:"secret"`
	// Enabled lists the hooks the server implements; empty means all of
	// HookNames.
	Enabled []string `json:"enabled,omitempty"`
	// FailClosed lists the blocking hooks whose failure (timeout, error,
	// bad answer) rejects the operation; every other hook fails open (the
	// operation proceeds unchanged).
	FailClosed []string `json:"failClosed,omitempty"`
	// TimeoutMs bounds a blocking hook call, NotifyTimeoutMs a
	// notification. Zero values mean 3000; at most 8000.
	TimeoutMs       int `json:"timeoutMs,omitempty"`
	NotifyTimeoutMs int `json:"notifyTimeoutMs,omitempty"`
	// Concurrency bounds the calls in flight to this app's hook server:
	// this many blocking calls and this many notifications. Zero value
	// means 16; at most 256.
	Concurrency int `json:"concurrency,omitempty"`
	// QueueSize bounds the notifications (and system-conversation
	// messages) waiting to be sent; when full, new ones are dropped and
	// counted. Zero value means 1000.
	QueueSize int `json:"queueSize,omitempty"`
	// SysMessageURL receives the messages clients send to system
	// conversations (JSON array of _SysMessage records). Empty: they are
	// only passed through _messageReceived.
	SysMessageURL string `json:"sysMessageUrl,omitempty"`
	// PushURL receives offline push notifications (docs/push.md). Empty:
	// no pushes are sent.
	PushURL string `json:"pushUrl,omitempty"`
}

// Validate reports a configuration error.
func (h *Hooks) Validate() error {
	for _, u := range []string{h.URL, h.SysMessageURL, h.PushURL} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("apps: hook URL %q must be an absolute http(s) URL", u)
		}
	}
	switch {
	case h.Secret == "":
		return fmt.Errorf("apps: hooks need a secret")
	case h.TimeoutMs < 0 || h.TimeoutMs > int(MaxHookTimeout/time.Millisecond) ||
		h.NotifyTimeoutMs < 0 || h.NotifyTimeoutMs > int(MaxHookTimeout/time.Millisecond):
		return fmt.Errorf("apps: hook timeouts must be 0-%d ms", MaxHookTimeout/time.Millisecond)
	case h.Concurrency < 0 || h.Concurrency > MaxHookConcurrency:
		return fmt.Errorf("apps: hook concurrency must be 0-%d", MaxHookConcurrency)
	case h.QueueSize < 0 || h.QueueSize > MaxHookQueue:
		return fmt.Errorf("apps: hook queueSize must be 0-%d", MaxHookQueue)
	}
	for _, n := range append(slices.Clone(h.Enabled), h.FailClosed...) {
		if !slices.Contains(HookNames, n) {
			return fmt.Errorf("apps: unknown hook %q", n)
		}
	}
	return nil
}

// Has reports whether the app's hook server implements hook.
func (h *Hooks) Has(hook string) bool {
	if h == nil || h.URL == "" {
		return false
	}
	return len(h.Enabled) == 0 || slices.Contains(h.Enabled, hook)
}

// Timeout is the bound of a blocking call.
func (h *Hooks) Timeout() time.Duration { return msOr(h.TimeoutMs, DefaultHookTimeout) }

// NotifyTimeout is the bound of a notification.
func (h *Hooks) NotifyTimeout() time.Duration {
	return msOr(h.NotifyTimeoutMs, DefaultHookNotifyTimeout)
}

// Workers is the concurrency bound.
func (h *Hooks) Workers() int {
	if h.Concurrency == 0 {
		return DefaultHookConcurrency
	}
	return h.Concurrency
}

// Queue is the notification queue bound.
func (h *Hooks) Queue() int {
	if h.QueueSize == 0 {
		return DefaultHookQueue
	}
	return h.QueueSize
}

func msOr(ms int, def time.Duration) time.Duration {
	if ms == 0 {
		return def
	}
	return time.Duration(ms) * time.Millisecond
}
