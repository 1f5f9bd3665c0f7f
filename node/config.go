package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/membership"
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
	// StoreReadCacheSize bounds the store's read cache in bytes (hot
	// records kept in memory, coherent with every write; node/store's
	// cache.go). Zero value means 32 MiB; negative disables it.
	StoreReadCacheSize int64
	// StoreDedupFilterSize bounds the store's absence filters of
	// de-duplication keys in bytes (node/store's absent.go). Zero value
	// means 64 MiB; negative disables them.
	StoreDedupFilterSize int64
	// StoreMinFreeBytes is the free space the store keeps on the data
	// directory's filesystem: below it the node refuses writes that add
	// data (node/store's diskguard.go) and leaves coordinating to replicas
	// with space, until free space is back above it plus a quarter. Zero
	// value means 1% of the filesystem's size, at least 64 MiB and at most
	// 1 GiB (store.DefaultMinFree); negative disables the guard.
	StoreMinFreeBytes int64
	// ClientAddr is the client listen address: WebSocket and the REST
	// endpoints. Zero value means ":8080".
	ClientAddr string
	// AdminAddr is the admin listen address: /healthz, /readyz, /metrics and
	// /admin/v1/*. Zero value means ":8081".
	AdminAddr string
	// AdminToken is the bearer token of everything on the admin port but
	// /healthz, /readyz and /metrics. Required unless Insecure (empty then
	// leaves the admin API open).
	AdminToken string
	// Insecure allows starting without cluster credentials: the peer
	// transport without TLS, gossip unencrypted, the admin API without a
	// token (whichever of PeerCAFile..., GossipKeyringFile and AdminToken
	// is not set). For development and tests on one machine only; the
	// node logs a warning naming what is open at every start.
	Insecure bool
	// PeerCAFile, PeerCertFile and PeerKeyFile are the PEM files of the
	// peer transport's mutual TLS: the cluster CA certificates (several
	// during a CA rotation), this node's certificate (Subject CommonName =
	// NodeID, ExtKeyUsage ServerAuth and ClientAuth) and its key. Required
	// unless Insecure; all three or none. Re-read when they change.
	PeerCAFile, PeerCertFile, PeerKeyFile string
	// GossipKeyringFile holds the gossip encryption keys, one base64 AES
	// key (16, 24 or 32 bytes) per line, the first one primary. Required
	// unless Insecure. Re-read when it changes.
	GossipKeyringFile string
	// BackupDir is the directory POST /admin/v1/backup writes checkpoints
	// under; Start creates it if missing. Zero value refuses backups.
	BackupDir string
	// CredentialPollInterval is how often the credential files are checked
	// for changes. Zero value means 10s (1s with LocalTimings).
	CredentialPollInterval time.Duration
	// PublicURL is the WebSocket URL /v1/route hands to SDKs, e.g.
	// "wss://rtm.example.com". Zero value derives it from each request
	// (ws:// or wss:// plus the Host header).
	PublicURL string
	// AllowedHosts lists the host names a request's Host header may carry
	// for the node to use it in the URLs it hands out (/v1/route, file
	// URLs) when PublicURL is unset; a request with another Host gets 400.
	// Empty means any Host is trusted, which only suits development: a
	// node that is not Insecure needs PublicURL or AllowedHosts.
	AllowedHosts []string
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
	// ReplicationFactor is R, the replicas per shard. Zero value means 3
	// (placement uses min(R, nodes)).
	ReplicationFactor int
	// WriteQuorum is W, the replicas that must hold a write before it is
	// acknowledged. Zero value means 2 (min(W, replicas of the shard)).
	WriteQuorum int
	// GossipAddr is the membership (memberlist) bind address, UDP and TCP.
	// Zero value means ":7946".
	GossipAddr string
	// TransportAddr is the peer transport bind address (TCP). Zero value
	// means the gossip port plus one (port 0 stays 0).
	TransportAddr string
	// AdvertiseHost is the host other nodes reach this one at. Zero value
	// means the bind host, which must then be a concrete address.
	AdvertiseHost string
	// Join lists gossip addresses (host:port) of running nodes. A node
	// whose data directory is new needs Join or Bootstrap; one that has
	// been a member of a cluster with other nodes needs Join.
	Join []string
	// FaultClockOffset shifts this node's lease and timestamp clock by the
	// given amount (fault injection: clock-skew tests). Requires Insecure.
	// Zero value means the real clock.
	FaultClockOffset time.Duration
	// FaultDiskFullAfter, when positive, makes every write of the store
	// fail with ENOSPC from this long after the node is serving (fault
	// injection: disk-full tests; the node stops at its next write).
	// Requires Insecure. Zero value means no injection.
	FaultDiskFullAfter time.Duration
	// FaultDiskFreeMiB, when set, makes the store's free-space guard see
	// this many MiB free on the data disk (fault injection: disk-low tests;
	// POST /admin/v1/faults changes it at run time). Requires Insecure.
	// Nil means the real free space.
	FaultDiskFreeMiB *int64
	// Bootstrap creates a new cluster when the data directory is new. A
	// data directory that already belongs to a cluster ignores it (the
	// node joins its cluster; logged).
	Bootstrap bool
	// ClusterID names the cluster. At bootstrap it becomes the cluster's
	// id (zero value: a random one); a joining node refuses a cluster with
	// another id; a data directory of another cluster is refused. Zero
	// value: take the id from the data directory or the cluster.
	ClusterID string
	// LocalTimings selects fast failure detection and short peer timeouts
	// for clusters on one machine (`make run`, tests).
	LocalTimings bool
	// FaultInjection enables POST /admin/v1/faults (tests, chaos runs).
	FaultInjection bool
	// Retention is how long messages are kept. Zero value means 180 days.
	Retention time.Duration
	// SessionTokenTTL is the lifetime of session tokens. Zero value means 48 h.
	SessionTokenTTL time.Duration
	// IdleTimeout closes silent client connections. Zero value means 360 s.
	IdleTimeout time.Duration
	// LoginTimeout closes connections that never log in. Zero value means 120 s.
	LoginTimeout time.Duration
	// HTTPRequestTimeout bounds the reading of one HTTP request on the
	// client port, body included (an upload), and the writing of its
	// answer. Zero value means 60 s.
	HTTPRequestTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive HTTP connection on the client port
	// that sent no request for this long. Zero value means 120 s.
	HTTPIdleTimeout time.Duration
	// MaxConnectionsPerIP bounds the open WebSocket connections from one
	// source address (HTTP 429 beyond it). Zero value means 2000; negative
	// means no limit.
	MaxConnectionsPerIP int
	// ConnectionsPerSecondPerIP is the rate of new WebSocket connections
	// from one source address, with bursts of four times the rate (HTTP 429
	// beyond it). Zero value means 100; negative means no limit.
	ConnectionsPerSecondPerIP float64
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
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = ring.DefaultReplicationFactor
	}
	if c.WriteQuorum == 0 {
		c.WriteQuorum = 2
	}
	if c.GossipAddr == "" {
		c.GossipAddr = ":7946"
	}
	if c.TransportAddr == "" {
		c.TransportAddr = nextPort(c.GossipAddr)
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.CredentialPollInterval == 0 {
		c.CredentialPollInterval = 10 * time.Second
		if c.LocalTimings {
			c.CredentialPollInterval = time.Second
		}
	}
	if c.HTTPRequestTimeout == 0 {
		c.HTTPRequestTimeout = 60 * time.Second
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = 120 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	// Messages name imnode's flags: every field is set from one.
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if len(c.Apps) == 0 {
		return errors.New("no apps configured (use --dev-app or --apps-file)")
	}
	if c.Shards < 1 || c.Shards > ring.MaxShards {
		return fmt.Errorf("--shards must be in [1, %d], got %d", ring.MaxShards, c.Shards)
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > ring.MaxReplicationFactor {
		return fmt.Errorf("--replication-factor must be in [1, %d], got %d", ring.MaxReplicationFactor, c.ReplicationFactor)
	}
	if c.WriteQuorum < 1 || c.WriteQuorum > c.ReplicationFactor {
		return fmt.Errorf("--write-quorum must be in [1, --replication-factor %d], got %d", c.ReplicationFactor, c.WriteQuorum)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if err := c.validateCredentials(); err != nil {
		return err
	}
	if err := c.validatePublicHosts(); err != nil {
		return err
	}
	if c.Retention < 0 || c.SessionTokenTTL < 0 || c.IdleTimeout < 0 || c.LoginTimeout < 0 {
		return errors.New("--retention, --session-token-ttl, --idle-timeout and --login-timeout must not be negative")
	}
	if c.HTTPRequestTimeout < 0 || c.HTTPIdleTimeout < 0 {
		return errors.New("--http-request-timeout and --http-idle-timeout must not be negative")
	}
	if c.FaultClockOffset != 0 && !c.Insecure {
		return errors.New("--fault-clock-offset requires --insecure (fault injection is for tests)")
	}
	if c.FaultDiskFullAfter != 0 && !c.Insecure {
		return errors.New("--fault-disk-full-after requires --insecure (fault injection is for tests)")
	}
	if c.FaultDiskFreeMiB != nil && !c.Insecure {
		return errors.New("--fault-disk-free-mib requires --insecure (fault injection is for tests)")
	}
	if len(c.ClusterID) > membership.MaxClusterIDLen {
		return fmt.Errorf("--cluster-id must be at most %d bytes, got %d", membership.MaxClusterIDLen, len(c.ClusterID))
	}
	return nil
}

// validateCredentials requires the cluster credentials unless Insecure.
func (c *Config) validateCredentials() error {
	peer := []string{c.PeerCAFile, c.PeerCertFile, c.PeerKeyFile}
	if n := len(slices.DeleteFunc(slices.Clone(peer), func(s string) bool { return s == "" })); n != 0 && n != 3 {
		return errors.New("node: PeerCAFile, PeerCertFile and PeerKeyFile (--peer-ca-file, --peer-cert-file, --peer-key-file) go together")
	}
	if c.Insecure {
		return nil
	}
	var missing []string
	if c.PeerCAFile == "" {
		missing = append(missing, "--peer-ca-file", "--peer-cert-file", "--peer-key-file")
	}
	if c.GossipKeyringFile == "" {
		missing = append(missing, "--gossip-keyring-file")
	}
	if c.AdminToken == "" {
		missing = append(missing, "--admin-token (or --admin-token-file)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("node: cluster credentials required, missing %s (or start with --insecure, for development only; see docs/security.md)", strings.Join(missing, ", "))
	}
	return nil
}

// nextPort returns addr with its port plus one (port 0 stays 0); an
// unparsable addr is returned as is for Validate to report.
func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}
