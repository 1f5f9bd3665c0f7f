package client

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
)

// Defaults mirror the JS SDK (LEANCLOUD-RTM.md 1.4, 1.7).
const (
	// DefaultRequestTimeout is how long a request waits for its response when
	// the caller's context has no deadline: the JS SDK's COMMAND_TIMEOUT.
	DefaultRequestTimeout = 20 * time.Second
	// DefaultHeartbeatInterval is the period of the `echo` command.
	DefaultHeartbeatInterval = 180 * time.Second
	// DefaultLivenessTimeout: with no frame (or pong) from the server for this
	// long the socket is considered dead and reconnected. 380 s is two missed
	// heartbeats plus a 20 s grace, as in the JS SDK.
	DefaultLivenessTimeout = 380 * time.Second
	// DefaultDialTimeout bounds one TCP connect plus WebSocket handshake.
	DefaultDialTimeout = 10 * time.Second
	// DefaultReconnectBaseDelay and DefaultReconnectMaxDelay give the JS
	// backoff: attempt k waits min(1 s * 2^k, 5 min).
	DefaultReconnectBaseDelay = time.Second
	DefaultReconnectMaxDelay  = 5 * time.Minute
	// DefaultAckInterval batches receiver acks like the JS SDK (once per
	// second per conversation), which keeps the server's durable ack writes
	// per conversation bounded whatever the message rate.
	DefaultAckInterval = time.Second
	// DefaultEventQueueSize is the capacity of an IMClient's event channel.
	// 1024 events absorb a burst of a few seconds of a busy group chat; when
	// the channel is full the oldest event is dropped (see IMClient.Events).
	DefaultEventQueueSize = 1024
	// fireQueueSize bounds the fire-and-forget frames (receiver acks, read)
	// waiting for the writer goroutine; when full, new ones are dropped and
	// counted (they are advisory: the server only loses a delivery receipt).
	fireQueueSize = 1024
	// userAgent is sent as sessionMessage.ua.
	userAgent = "imcluster-go/1"
	// configBitmap is what the JS SDK sends (187): patch messages, temporary
	// conversations, transient-message acks, reliable notifications, partial
	// failures, omit-peer-id (we always send peerId anyway).
	configBitmap = 187
)

// Config configures a Conn. The zero value of every field except URLs and
// AppID means the default given in its comment.
type Config struct {
	// URLs are WebSocket URLs (ws:// or wss://), used verbatim like the SDK's
	// RTMServers. They are tried in order; after a successful open the list is
	// rotated (the URL that worked moves to the end), so a reconnect prefers
	// another server. If empty, they come from the router GET
	// <Server>/v1/route, asked again after a goaway or when all fail.
	URLs []string
	// Server is the REST base URL (http:// or https://, no trailing slash),
	// the SDK's `server` option: router, /1.1/rtm/notifications (missed
	// reliable notifications are replayed after a reconnect) and member
	// roles. Optional when URLs are given: REST calls then go to the node
	// the client is connected to (an imcluster node serves REST on its
	// WebSocket port), which is also where they go when Server does not
	// answer.
	Server string
	// AppKey is sent as X-LC-Key on REST calls.
	AppKey string
	// HTTPClient performs REST calls. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// AppID is sent in session/open. Required.
	AppID string
	// Subprotocol is protocol.SubprotocolBinary (zero value: binary frames)
	// or protocol.SubprotocolBase64 (text frames, the SDK's noBinary).
	Subprotocol string
	// RequestTimeout applies to requests whose context has no deadline.
	// Zero means DefaultRequestTimeout (20 s).
	RequestTimeout time.Duration
	// HeartbeatInterval is the echo period. Zero means 180 s.
	HeartbeatInterval time.Duration
	// LivenessTimeout closes and reconnects a silent socket. Zero means 380 s.
	LivenessTimeout time.Duration
	// DialTimeout bounds one connect + handshake. Zero means 10 s.
	DialTimeout time.Duration
	// NoReconnect disables automatic reconnection: a dropped socket closes
	// the sessions on it (they receive a CloseEvent).
	NoReconnect bool
	// AckInterval is how often receiver acks are flushed: the acks of one
	// conversation within it are merged into one {cid, fromts, tots} frame,
	// as the JS SDK does once per second. Zero means 1 s.
	AckInterval time.Duration
	// ReconnectBaseDelay and ReconnectMaxDelay shape the backoff
	// min(base * 2^attempt, max). Zero means 1 s and 5 min.
	ReconnectBaseDelay time.Duration
	ReconnectMaxDelay  time.Duration
	// Logger receives connection-level diagnostics. Nil means discard.
	Logger *slog.Logger
}

// DefaultConfig returns a Config for the given app and servers with every
// other field at its default.
func DefaultConfig(appID string, urls ...string) Config {
	return Config{AppID: appID, URLs: urls}
}

// Validate reports a missing or malformed field.
func (c *Config) Validate() error {
	if c.AppID == "" {
		return errors.New("client: config: AppID is required")
	}
	if len(c.URLs) == 0 && c.Server == "" {
		return errors.New("client: config: URLs or Server is required")
	}
	if c.Server != "" {
		p, err := url.Parse(c.Server)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") {
			return fmt.Errorf("client: config: server %q must be an http(s) URL", c.Server)
		}
	}
	for _, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("client: config: url %q: %w", u, err)
		}
		if p.Scheme != "ws" && p.Scheme != "wss" {
			return fmt.Errorf("client: config: url %q: scheme must be ws or wss", u)
		}
	}
	switch c.Subprotocol {
	case "", protocol.SubprotocolBinary, protocol.SubprotocolBase64:
	default:
		return fmt.Errorf("client: config: unknown subprotocol %q", c.Subprotocol)
	}
	if c.RequestTimeout < 0 || c.HeartbeatInterval < 0 || c.LivenessTimeout < 0 || c.DialTimeout < 0 || c.AckInterval < 0 ||
		c.ReconnectBaseDelay < 0 || c.ReconnectMaxDelay < 0 {
		return errors.New("client: config: durations must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.URLs = append([]string(nil), c.URLs...)
	if c.Subprotocol == "" {
		c.Subprotocol = protocol.SubprotocolBinary
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.LivenessTimeout == 0 {
		c.LivenessTimeout = DefaultLivenessTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReconnectBaseDelay == 0 {
		c.ReconnectBaseDelay = DefaultReconnectBaseDelay
	}
	if c.AckInterval == 0 {
		c.AckInterval = DefaultAckInterval
	}
	if c.ReconnectMaxDelay == 0 {
		c.ReconnectMaxDelay = DefaultReconnectMaxDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	c.Server = strings.TrimSuffix(c.Server, "/")
	return c
}

// backoff returns the delay before reconnect attempt k (0-based):
// min(base * 2^k, max), the JS SDK schedule.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for range attempt {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}
