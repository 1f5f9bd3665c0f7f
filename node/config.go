package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/ring"
)

// Version is the build version, stamped by the linker
// (-X github.com/imcluster/imcluster/node.Version=...).
var Version = "dev"

// Config configures a Node. Every field can be set from imnode's flags or
// IMNODE_* environment variables.
type Config struct {
	// NodeID is the stable node id (the StatefulSet pod name in Kubernetes).
	// Zero value means "imnode-0".
	NodeID string
	// DataDir holds the Pebble database. Required.
	DataDir string
	// ClientAddr is the client listen address: WebSocket and the REST
	// endpoints. Zero value means ":8080".
	ClientAddr string
	// AdminAddr is the admin listen address: /healthz, /readyz, /metrics and
	// /admin/v1/*. Zero value means ":8081".
	AdminAddr string
	// AdminToken is the bearer token of /admin/v1/*. Empty disables the
	// check (development only).
	AdminToken string
	// PublicURL is the WebSocket URL /v1/route hands to SDKs, e.g.
	// "wss://rtm.example.com". Zero value derives it from each request
	// (ws:// or wss:// plus the Host header).
	PublicURL string
	// TLSCertFile and TLSKeyFile, when both set, serve the client port over
	// TLS (wss:// and https://). Zero values mean plain TCP, for nodes behind
	// a TLS-terminating load balancer.
	TLSCertFile string
	TLSKeyFile  string
	// Apps are the tenants served. At least one is required.
	Apps []apps.App
	// Shards is the fixed shard count S. Zero value means 256. It must never
	// change for an existing data directory.
	Shards int
	// Retention is how long messages are kept. Zero value means 180 days.
	Retention time.Duration
	// SessionTokenTTL is the lifetime of session tokens. Zero value means 48 h.
	SessionTokenTTL time.Duration
	// IdleTimeout closes silent client connections. Zero value means 360 s.
	IdleTimeout time.Duration
	// LoginTimeout closes connections that never log in. Zero value means 120 s.
	LoginTimeout time.Duration
	// ShutdownGrace is how long Shutdown waits for clients to leave after
	// goaway before closing their sockets. Zero value means 5 s.
	ShutdownGrace time.Duration
	// Logger is the root logger. Zero value means slog.Default().
	Logger *slog.Logger
	// Registry receives metrics and serves /metrics. Zero value means a new
	// registry with the Go and process collectors.
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = "imnode-0"
	}
	if c.ClientAddr == "" {
		c.ClientAddr = ":8080"
	}
	if c.AdminAddr == "" {
		c.AdminAddr = ":8081"
	}
	if c.Shards == 0 {
		c.Shards = ring.DefaultShards
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("node: DataDir is required")
	}
	if len(c.Apps) == 0 {
		return errors.New("node: no apps configured (use --dev-app or --apps-file)")
	}
	if c.Shards < 1 || c.Shards > ring.MaxShards {
		return fmt.Errorf("node: Shards must be in [1, %d], got %d", ring.MaxShards, c.Shards)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("node: TLSCertFile and TLSKeyFile go together")
	}
	if c.Retention < 0 || c.SessionTokenTTL < 0 || c.IdleTimeout < 0 || c.LoginTimeout < 0 {
		return errors.New("node: durations must not be negative")
	}
	return nil
}
