package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imcluster/imcluster/node/ring"
)

// ErrInvalidConfig is returned by Config.Validate and New.
var ErrInvalidConfig = errors.New("membership: invalid config")

// Config configures a Membership. Durations are wall time; a zero value
// takes the default noted on the field (DefaultConfig's).
type Config struct {
	// NodeID is the stable node id and memberlist name. Required.
	NodeID string
	// ClientAddr, PeerAddr and AdminAddr are gossiped to other nodes
	// (host:port). Optional, but the cluster needs PeerAddr to route.
	ClientAddr, PeerAddr, AdminAddr string
	// Version is the software version, gossiped for the admin API.
	Version string
	// State is the lifecycle state this node announces at Start. Zero
	// value means ring.StateJoining.
	State ring.State

	// ClusterID names the cluster this node belongs to; a peer gossiping
	// another one is refused. Empty means unknown: a new node learns it
	// when it joins (a cluster formed before cluster ids has none).
	ClusterID string
	// New marks a node that has never been a member (an empty data
	// directory, not bootstrapping): it merges only with nodes that are
	// not new, so no two new nodes form a cluster by themselves, and
	// adopts their cluster id. False: this node is (or is forming) a
	// cluster.
	New bool
	// Shards, ReplicationFactor and WriteQuorum are settings every member
	// must share: a peer gossiping different values is refused (see
	// checks.go). Zero disables the check of that setting.
	Shards, ReplicationFactor, WriteQuorum int
	// OnIdentity, if set, is called from the loop goroutine when this
	// node learns its cluster id (it started without one) and when it
	// first sees another member; the owner records both on disk. It may
	// block briefly (a file write), not on Membership.
	OnIdentity func(Identity)

	// BindAddr and BindPort are where gossip (UDP and TCP) listens. Zero
	// values mean "0.0.0.0" and 7946; BindPort -1 means a port chosen by
	// the kernel (tests).
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are announced to other nodes when
	// they differ from the bind address (NAT, pod IP). Empty/zero means
	// derived from the bind address.
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are host:port gossip addresses to join at Start. If none is
	// reachable, Start still succeeds and retries every RejoinInterval
	// until one is (pods of a StatefulSet start in any order).
	Seeds []string
	// RejoinInterval is the delay between join attempts while no seed has
	// answered. Zero means 1s.
	RejoinInterval time.Duration

	// GossipInterval: how often memberlist gossips to GossipNodes random
	// nodes. Zero means 100ms.
	GossipInterval time.Duration
	// ProbeInterval and ProbeTimeout drive failure detection. Zero means
	// 1s and 500ms.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// SuspicionMult scales how long a suspected node has to refute before
	// it is declared dead: SuspicionMult * max(1, log10(N)) *
	// ProbeInterval. Zero means 4.
	SuspicionMult int
	// PushPullInterval is the full-state anti-entropy period (roster table
	// included). Zero means 15s.
	PushPullInterval time.Duration
	// QuiescentPeriod: a Snapshot is published once no event arrived for
	// this long. Zero means 200ms.
	QuiescentPeriod time.Duration
	// MaxCoalescePeriod bounds how long a burst can delay a Snapshot. Zero
	// means 2s.
	MaxCoalescePeriod time.Duration
	// DeadNodeReclaimTime: after a node has been dead this long, a node
	// with the same id at another address (a restarted pod with a new IP)
	// takes its place. Zero means 5s.
	DeadNodeReclaimTime time.Duration
	// DuplicateGrace is how long a node that has not joined yet keeps
	// retrying while a live node uses its id before it gives up (a
	// restarted node at a new address looks like a duplicate until the
	// cluster declared its predecessor dead). Zero means 30s.
	DuplicateGrace time.Duration
	// LeftRetention is how long a left node stays listed (Pruned) after
	// this node saw it leave. Zero means 1h.
	LeftRetention time.Duration
	// UpdateTimeout bounds waiting for a state change to be broadcast.
	// Zero means 5s.
	UpdateTimeout time.Duration

	// Logger is the parent logger; nil means slog.Default(). memberlist's
	// own log lines are routed into it.
	Logger *slog.Logger
	// Transport replaces memberlist's UDP/TCP transport (tests, mocks).
	// Nil means a memberlist.NetTransport on BindAddr:BindPort.
	Transport memberlist.Transport
	// Keyring, when set, encrypts and authenticates all gossip (UDP and
	// TCP) with AES-GCM: outgoing messages use its primary key, and only
	// incoming messages that decrypt with one of its keys are accepted.
	// The owner may change its keys at any time (ApplyKeyring). Nil means
	// unencrypted gossip that anyone reaching the port can join
	// (--insecure only).
	Keyring *memberlist.Keyring
}

// DefaultConfig returns LAN defaults (see the package doc for the
// reasoning); NodeID and addresses are left to the caller.
func DefaultConfig() Config {
	return Config{
		BindAddr:          "0.0.0.0",
		BindPort:          7946,
		RejoinInterval:    time.Second,
		GossipInterval:    100 * time.Millisecond,
		ProbeInterval:     time.Second,
		ProbeTimeout:      500 * time.Millisecond,
		SuspicionMult:     4,
		PushPullInterval:  15 * time.Second,
		QuiescentPeriod:   200 * time.Millisecond,
		MaxCoalescePeriod: 2 * time.Second,
		UpdateTimeout:     5 * time.Second,
		DuplicateGrace:    30 * time.Second,
		LeftRetention:     time.Hour,

		DeadNodeReclaimTime: 5 * time.Second,
	}
}

// DefaultLocalConfig returns fast settings for tests on 127.0.0.1 with a
// kernel-chosen port: gossip every 20ms, probe every 200ms (100ms timeout,
// generous enough for -race on a loaded 2-core machine), dead after about
// 600ms of silence, push/pull every 500ms, snapshots after 20ms of quiet.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = -1
	c.RejoinInterval = 50 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3
	c.PushPullInterval = 500 * time.Millisecond
	c.QuiescentPeriod = 20 * time.Millisecond
	c.MaxCoalescePeriod = 200 * time.Millisecond
	c.UpdateTimeout = time.Second
	c.DeadNodeReclaimTime = 50 * time.Millisecond
	c.DuplicateGrace = 10 * time.Second
	c.LeftRetention = time.Minute
	return c
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.State == ring.StateUnknown {
		c.State = ring.StateJoining
	}
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	if c.BindPort == 0 {
		c.BindPort = d.BindPort
	}
	for _, p := range []struct{ v, d *time.Duration }{
		{&c.RejoinInterval, &d.RejoinInterval}, {&c.GossipInterval, &d.GossipInterval},
		{&c.ProbeInterval, &d.ProbeInterval}, {&c.ProbeTimeout, &d.ProbeTimeout},
		{&c.PushPullInterval, &d.PushPullInterval}, {&c.QuiescentPeriod, &d.QuiescentPeriod},
		{&c.MaxCoalescePeriod, &d.MaxCoalescePeriod}, {&c.UpdateTimeout, &d.UpdateTimeout},
		{&c.DeadNodeReclaimTime, &d.DeadNodeReclaimTime}, {&c.DuplicateGrace, &d.DuplicateGrace}, {&c.LeftRetention, &d.LeftRetention},
	} {
		if *p.v == 0 {
			*p.v = *p.d
		}
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the config after zero values take their defaults,
// including that the meta record fits memberlist's 512-byte limit.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.NodeID == "":
		return fmt.Errorf("%w: empty node id", ErrInvalidConfig)
	case !c.State.Valid():
		return fmt.Errorf("%w: state %v", ErrInvalidConfig, c.State)
	case c.BindPort < -1 || c.BindPort > 65535:
		return fmt.Errorf("%w: bind port %d", ErrInvalidConfig, c.BindPort)
	case c.ProbeTimeout >= c.ProbeInterval:
		return fmt.Errorf("%w: probe timeout %v must be below probe interval %v", ErrInvalidConfig, c.ProbeTimeout, c.ProbeInterval)
	case c.QuiescentPeriod > c.MaxCoalescePeriod:
		return fmt.Errorf("%w: quiescent period above max coalesce period", ErrInvalidConfig)
	case c.Shards < 0 || c.ReplicationFactor < 0 || c.WriteQuorum < 0 || max(c.Shards, c.ReplicationFactor, c.WriteQuorum) > 1<<20:
		return fmt.Errorf("%w: cluster settings out of range", ErrInvalidConfig)
	}
	if len(c.ClusterID) > MaxClusterIDLen {
		return fmt.Errorf("%w: cluster id longer than %d bytes", ErrInvalidConfig, MaxClusterIDLen)
	}
	m := c.meta(ring.StateLeft, ^uint64(0)) // worst case: largest seq, longest cluster id, largest settings
	m.ClusterID = strings.Repeat("x", MaxClusterIDLen)
	m.Shards, m.ReplicationFactor, m.WriteQuorum = 1<<20, 1<<20, 1<<20
	if n := len(encodeMeta(nil, &m)); n > maxMetaSize {
		return fmt.Errorf("%w: node meta is %d bytes, limit %d (shorten id, addresses or version)", ErrInvalidConfig, n, maxMetaSize)
	}
	return nil
}

// meta returns this node's meta record for state and seq.
func (c *Config) meta(st ring.State, seq uint64) Meta {
	return Meta{
		ID: c.NodeID, State: st, Seq: seq, ClientAddr: c.ClientAddr, PeerAddr: c.PeerAddr, AdminAddr: c.AdminAddr, Version: c.Version,
		ClusterID: c.ClusterID, New: c.New, Shards: c.Shards, ReplicationFactor: c.ReplicationFactor, WriteQuorum: c.WriteQuorum,
	}
}

// memberlistConfig maps c onto a memberlist config.
func (c *Config) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeID
	mc.BindAddr = c.BindAddr
	mc.BindPort = max(c.BindPort, 0)
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if mc.AdvertiseAddr != "" && mc.AdvertisePort == 0 && c.BindPort > 0 {
		// An advertised host without a port announces the bound port
		// (memberlist would announce port 0).
		mc.AdvertisePort = c.BindPort
	}
	mc.GossipInterval = c.GossipInterval
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.PushPullInterval = c.PushPullInterval
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	if c.BindPort == -1 {
		// Local tests: faster TCP fallback and dead-node gossip.
		mc.TCPTimeout = time.Second
		mc.GossipToTheDeadTime = 2 * time.Second
	}
	if c.Transport != nil {
		mc.Transport = c.Transport
	}
	if c.Keyring != nil {
		mc.Keyring = c.Keyring
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	return mc
}
