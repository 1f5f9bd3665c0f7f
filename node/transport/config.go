package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrInvalidConfig is returned by Config.Validate and New.
var ErrInvalidConfig = errors.New("transport: invalid config")

// Resolver maps a node id to its peer address (host:port). It is called
// from peer goroutines before every dial, so an address change is picked up
// on reconnect; it must be safe for concurrent use and must not block.
type Resolver func(nodeID string) (addr string, err error)

// Config configures a Transport. Zero durations and sizes take the defaults
// noted on each field (those of DefaultConfig).
type Config struct {
	// NodeID is this node's id, sent in the handshake. Required; at most
	// 255 bytes.
	NodeID string
	// ListenAddr is the TCP address to listen on for peers, e.g.
	// "0.0.0.0:7946" or "127.0.0.1:0". Empty means the transport only
	// dials (tests of a pure client).
	ListenAddr string
	// Resolve maps node ids to peer addresses. Required to dial.
	Resolve Resolver
	// Handler serves inbound requests and messages. Nil answers every
	// request with a non-retryable error and drops messages.
	Handler Handler
	// Epoch returns this node's current roster epoch; every request and
	// message is stamped with it, and inbound requests whose non-zero epoch
	// differs are answered with an EpochMismatchError. Nil means epoch 0
	// and no check. Called on hot paths: make it an atomic load.
	Epoch func() uint64
	// SkipEpochCheck, if set, exempts requests of the methods for which it
	// returns true from the epoch check (e.g. anti-entropy or session
	// re-registration, which are valid across epochs). Nil checks all.
	SkipEpochCheck func(method uint16) bool
	// Logger receives connection-level events. Nil means slog.Default().
	Logger *slog.Logger
	// Dial opens connections; nil means a net.Dialer. Tests inject faults
	// here or through Faults.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Faults, if set, injects drops, delays and partitions (tests only).
	Faults *Faults
	// TLS, when set, runs every connection over mutual TLS: the dialer and
	// the listener each present a certificate that the other verifies
	// (TLSSource decides against which CAs), and the id a peer claims in
	// its Hello (or answers with in HelloAck) must be its certificate's
	// Subject CommonName. Nil means plain TCP, where any process reaching
	// the port can claim any node id (insecure mode only).
	TLS TLSSource
	// Authorize, when set, is asked before every inbound request and
	// message whether the sending peer (its id proven by TLS) may still
	// talk to this node; an error answers the request with a retryable
	// error (the roster may not have caught up yet) and drops a message.
	// Called per frame: it must be fast and safe for concurrent use. Nil
	// allows every peer that completed the handshake.
	Authorize func(nodeID string) error

	// SendQueueLen bounds the frames queued to one peer and not yet
	// written. When it is full, Call and Send fail at once with
	// ErrQueueFull (retryable): a full queue means the peer or the link is
	// slower than our offered load, and waiting would only add latency to
	// every caller. Zero means 1024 (at 2 KiB frames, 2 MiB per peer).
	SendQueueLen int
	// MaxPending bounds calls to one peer awaiting a response; beyond it
	// Call fails with ErrQueueFull. Zero means 4096.
	MaxPending int
	// MaxInflight bounds inbound requests handled concurrently per
	// connection. When reached, the reader stops reading that connection
	// until a handler finishes: TCP backpressure to the sender, whose send
	// queue then fills and fails fast. With the reader holding one more
	// frame, an inbound connection holds at most (MaxInflight+1) *
	// MaxFrameSize payload bytes; peer messages are small in practice.
	// Zero means 256.
	MaxInflight int
	// MaxFrameSize bounds one frame's size in bytes (after the 4-byte
	// length); a larger frame from a peer closes the connection, a larger
	// payload from a caller fails with ErrFrameTooLarge. Zero means 4 MiB.
	MaxFrameSize int
	// RequestTimeout applies to calls whose context has no deadline. Zero
	// means 5s, well inside the SDK's 20s request timeout.
	RequestTimeout time.Duration
	// DialTimeout bounds a TCP connect plus handshake. Zero means 2s.
	DialTimeout time.Duration
	// WriteTimeout bounds one flush of queued frames to a peer. A peer that
	// stops reading for this long is disconnected, its pending calls fail
	// and its queue is dropped, so memory stays bounded. Zero means 10s.
	WriteTimeout time.Duration
	// IdleTimeout closes an accepted connection on which nothing (not even
	// a ping) arrived for this long, so a peer that stops sending cannot
	// hold a connection and its goroutines forever. Dialers ping every
	// IdleTimeout/3 while connected. Zero means 30s.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential delay
	// between redials of an unreachable peer, during which calls to it fail
	// fast with ErrUnavailable. Zero means 100ms and 5s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// MessageHold bounds how long one-way messages that Send accepted
	// are kept for a peer that cannot be reached: a failed dial or a lost
	// connection keeps the messages still queued (at most SendQueueLen of
	// them) and writes them, in order, first on the next connection. If
	// no connection succeeds within MessageHold of the first failure, the
	// next failure drops them, counted in Stats.MessagesDropped; so a
	// message waits at most MessageHold + BackoffMax + DialTimeout. Zero
	// means 3s: the first five redials at the default backoff.
	MessageHold time.Duration
	// Registerer receives the transport's metrics
	// (imnode_transport_*). Nil means not registered.
	Registerer prometheus.Registerer
}

// TLSSource supplies the TLS configuration of each new connection, so
// rotated credentials apply to the next handshake. Implementations must be
// safe for concurrent use (pki.Files is one).
type TLSSource interface {
	// ServerConfig is used for one accepted connection. It must require
	// and verify a client certificate.
	ServerConfig() *tls.Config
	// ClientConfig is used for one dial. It must verify the server's
	// certificate chain; the transport checks the node id.
	ClientConfig() *tls.Config
}

// DefaultConfig returns production defaults; NodeID, ListenAddr, Resolve,
// Handler and Epoch are left to the caller.
func DefaultConfig() Config {
	return Config{
		SendQueueLen:   1024,
		MaxPending:     4096,
		MaxInflight:    256,
		MaxFrameSize:   4 << 20,
		RequestTimeout: 5 * time.Second,
		DialTimeout:    2 * time.Second,
		WriteTimeout:   10 * time.Second,
		IdleTimeout:    30 * time.Second,
		BackoffMin:     100 * time.Millisecond,
		BackoffMax:     5 * time.Second,
		MessageHold:    3 * time.Second,
	}
}

// DefaultLocalConfig returns defaults for tests on 127.0.0.1: short
// timeouts and backoff so faults are seen and healed quickly.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.ListenAddr = "127.0.0.1:0"
	c.RequestTimeout = 2 * time.Second
	c.DialTimeout = time.Second
	c.WriteTimeout = time.Second
	c.BackoffMin = 10 * time.Millisecond
	c.BackoffMax = 200 * time.Millisecond
	c.MessageHold = time.Second
	return c
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.SendQueueLen, d.SendQueueLen)
	setDefault(&c.MaxPending, d.MaxPending)
	setDefault(&c.MaxInflight, d.MaxInflight)
	setDefault(&c.MaxFrameSize, d.MaxFrameSize)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.DialTimeout, d.DialTimeout)
	setDefault(&c.WriteTimeout, d.WriteTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.BackoffMin, d.BackoffMin)
	setDefault(&c.BackoffMax, d.BackoffMax)
	setDefault(&c.MessageHold, d.MessageHold)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Epoch == nil {
		c.Epoch = func() uint64 { return 0 }
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	return c
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// Validate checks the config after zero values take their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.NodeID == "" || len(c.NodeID) > maxNodeIDLen:
		return fmt.Errorf("%w: node id must be 1..%d bytes", ErrInvalidConfig, maxNodeIDLen)
	case c.SendQueueLen < 0 || c.MaxPending < 0 || c.MaxInflight < 0:
		return fmt.Errorf("%w: negative queue bound", ErrInvalidConfig)
	case c.MaxFrameSize < requestHeader || c.MaxFrameSize > 1<<30:
		return fmt.Errorf("%w: max frame size %d", ErrInvalidConfig, c.MaxFrameSize)
	case c.RequestTimeout < 0 || c.DialTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.MessageHold < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("%w: backoff [%v, %v]", ErrInvalidConfig, c.BackoffMin, c.BackoffMax)
	}
	return nil
}
