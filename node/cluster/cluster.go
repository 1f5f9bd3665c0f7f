package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/presence"
	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/route"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Config configures a Cluster. Start from DefaultConfig or
// DefaultLocalConfig, which set the timings.
type Config struct {
	// NodeID is this node's stable id. Required.
	NodeID string
	// Store is the node's database. Required.
	Store *store.Store
	// Shards is S. Zero means 256.
	Shards int
	// ReplicationFactor is R. Zero means 3. Placement uses min(R, placed
	// nodes).
	ReplicationFactor int
	// WriteQuorum is W: a write is acknowledged after min(W, replicas of
	// its shard) replicas hold it durably. Zero means 2.
	WriteQuorum int
	// GossipAddr is the memberlist bind address (UDP and TCP), host:port;
	// port 0 picks one. Required.
	GossipAddr string
	// TransportAddr is the peer transport listen address (TCP). Required.
	TransportAddr string
	// AdvertiseHost is the host other nodes reach this one at. Empty means
	// the host of each bind address (which must then not be unspecified).
	AdvertiseHost string
	// Seeds are gossip addresses of running nodes to join.
	Seeds []string
	// ClientAddr and AdminAddr are gossiped for the admin API.
	ClientAddr, AdminAddr string
	// Version is gossiped.
	Version string
	// FaultInjection enables Faults (tests and chaos runs).
	FaultInjection bool

	// ProbeInterval is how often a node pings the other members over the
	// peer transport, so each side of a partition notices it (gossip may
	// not: it runs on other connections) even without traffic between
	// them. Zero means 1s.
	ProbeInterval time.Duration
	// SuspectFor is how long a peer that failed a call stays suspected
	// (tried last). Zero means 15s.
	SuspectFor time.Duration
	// JoinWait bounds how long Start waits for a seed to answer before a
	// bootstrapping node forms the new cluster alone. Zero means 10s.
	JoinWait time.Duration
	// Bootstrap: this node forms a new cluster (node.Config.Bootstrap on a
	// new data directory). Otherwise a node with seeds waits in Start,
	// not ready, until one answers: it never forms a cluster of its own.
	Bootstrap bool
	// Replica holds the timings and clock of the shard replicas (lease
	// duration, request timeout, anti-entropy, sync rate, Now); the
	// cluster fills in the node id, store, shard count, quorum, logger and
	// registerer.
	Replica replica.Config
	// Transport holds the peer transport's timings; the cluster fills in
	// the node id, address, handler, epoch, logger and faults.
	Transport transport.Config
	// Membership holds the gossip timings; the cluster fills in the node
	// id, addresses, state, seeds and logger.
	Membership membership.Config
	// Logger is the parent logger. Zero means slog.Default().
	Logger *slog.Logger
	// Registerer receives the cluster, replica and transport metrics. Zero
	// means not registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the production timings.
func DefaultConfig() Config {
	return Config{
		ProbeInterval: time.Second, SuspectFor: 15 * time.Second, JoinWait: 10 * time.Second,
		Replica: replica.DefaultConfig(), Transport: transport.DefaultConfig(), Membership: membership.DefaultConfig(),
	}
}

// DefaultLocalConfig returns fast timings for tests and `make run` on one
// machine.
func DefaultLocalConfig() Config {
	mcfg := membership.DefaultLocalConfig()
	// -race on a loaded 2-core machine: give probes more slack.
	mcfg.ProbeInterval = 500 * time.Millisecond
	mcfg.ProbeTimeout = 300 * time.Millisecond
	mcfg.SuspicionMult = 4
	return Config{
		ProbeInterval: 300 * time.Millisecond, SuspectFor: 5 * time.Second, JoinWait: 5 * time.Second,
		Replica: replica.DefaultLocalConfig(), Transport: transport.DefaultLocalConfig(), Membership: mcfg,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.SuspectFor == 0 {
		c.SuspectFor = d.SuspectFor
	}
	if c.JoinWait == 0 {
		c.JoinWait = d.JoinWait
	}
	if c.Transport.SendQueueLen == 0 {
		c.Transport = d.Transport
	}
	if c.Membership.ProbeInterval == 0 {
		c.Membership = d.Membership
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("cluster: NodeID is required")
	case c.Store == nil:
		return errors.New("cluster: Store is required")
	case c.GossipAddr == "" || c.TransportAddr == "":
		return errors.New("cluster: GossipAddr and TransportAddr are required")
	case c.WriteQuorum < 1 || c.WriteQuorum > c.ReplicationFactor:
		return fmt.Errorf("cluster: write quorum %d must be in [1, replication factor %d]", c.WriteQuorum, c.ReplicationFactor)
	}
	return ring.Config{Shards: c.Shards, ReplicationFactor: c.ReplicationFactor}.Validate()
}

// Gateway is what the cluster needs from the node's gateway (for the
// presence hub).
type Gateway = presence.Gateway

// asyncQueueLen bounds background tasks (registrations, relayed kicks and
// session ends); when full a task is dropped and counted: registrations
// are soft state repaired by the next re-registration.
const asyncQueueLen = 4096

// Cluster is one node's membership in the cluster. Create it with New, set
// the engine and gateway, Start it, and Shutdown when done.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	st   *store.Store
	ml   *membership.Membership
	tr   *transport.Transport
	flt  *transport.Faults
	met  *metrics
	ring atomic.Pointer[ring.Ring]
	snap atomic.Pointer[membership.Snapshot]

	engine *conversation.Engine
	rep    *replica.Set
	hub    *presence.Hub
	router *route.Router

	gossipAddr string

	// tasks is the background task queue (async), run by runTasks.
	tasks chan func()

	suspectMu sync.Mutex
	suspects  map[string]time.Time // peer -> suspected until
	cutOff    map[string]time.Time // peer -> first failure since its last success
	// cutOffs is len(cutOff), stored under suspectMu and read without it:
	// Reachable, asked per push to a remote gateway, answers without the
	// lock while no peer is cut off.
	cutOffs atomic.Int32

	active   atomic.Bool
	draining atomic.Bool
	// started is set once Start has set up membership (c.ml): the admin
	// API may call in before that.
	started atomic.Bool
	drain   drainState

	ctx    context.Context //nolint:containedctx // lifetime context owned by the Cluster, cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg. Nothing listens until Start.
func New(cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		cfg: cfg, log: cfg.Logger.With("component", "cluster"), st: cfg.Store, met: m,
		ctx: ctx, cancel: cancel, suspects: map[string]time.Time{}, cutOff: map[string]time.Time{},
		tasks: make(chan func(), asyncQueueLen),
	}
	if cfg.FaultInjection {
		c.flt = transport.NewFaults(uint64(time.Now().UnixNano()))
	}
	// Until Start builds the first placement, peers' requests see an
	// empty ring (this node replicates nothing yet) and an empty view.
	empty, err := ring.New(ring.Config{Shards: cfg.Shards, ReplicationFactor: cfg.ReplicationFactor}, 0, nil)
	if err != nil {
		return nil, err
	}
	c.ring.Store(empty)
	c.snap.Store(&membership.Snapshot{Self: cfg.NodeID})
	rcfg := cfg.Replica
	rcfg.NodeID, rcfg.Store, rcfg.Shards, rcfg.WriteQuorum = cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum
	rcfg.Logger, rcfg.Registerer = cfg.Logger, cfg.Registerer
	if rcfg.MaxWritePayload == 0 && cfg.Transport.MaxFrameSize > 0 {
		// Room for the request frame's header.
		rcfg.MaxWritePayload = cfg.Transport.MaxFrameSize - 1<<10
	}
	if c.rep, err = replica.New(rcfg, c); err != nil {
		cancel()
		return nil, err
	}
	c.hub, err = presence.New(presence.Config{
		NodeID: cfg.NodeID, ClientShard: c.ClientShard, Peers: c, Async: c.async,
		RequestTimeout: c.rep.RequestTimeout(), Logger: cfg.Logger, Registerer: cfg.Registerer,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return c, nil
}

// SetEngine sets the conversation engine that runs commands this node
// coordinates. Call before Start.
func (c *Cluster) SetEngine(e *conversation.Engine) {
	c.engine = e
	c.rep.SetEngine(e)
	r, err := route.New(route.Config{NodeID: c.cfg.NodeID, Engine: e, Replicas: c.rep, Peers: c,
		Async: c.async, Logger: c.cfg.Logger})
	if err != nil {
		panic(fmt.Sprintf("cluster: router: %v", err)) // every field is set above
	}
	c.router = r
	e.SetWillForwarder(r.SendWill)
}

// SetGateway sets the node's gateway. Call before Start.
func (c *Cluster) SetGateway(g Gateway) { c.hub.SetGateway(g) }

// KV returns the store.KV the domain packages read and write through: each
// key at its shard's coordinator.
func (c *Cluster) KV() store.KV { return c.rep.KV() }

// Router returns the gateway's engine: it runs each command at the
// coordinator of the shard it touches.
func (c *Cluster) Router() *route.Router { return c.router }

// Presence returns the gateway's presence (session registry).
func (c *Cluster) Presence() *presence.Hub { return c.hub }

// Deliverer returns the engine's Deliverer (push fan-out).
func (c *Cluster) Deliverer() conversation.Deliverer { return c.hub }

// Kick closes every session of a client on every live node.
func (c *Cluster) Kick(app, clientID string) int { return c.hub.Kick(app, clientID) }

// async runs f on the cluster's background worker without blocking.
func (c *Cluster) async(f func()) {
	select {
	case c.tasks <- f:
	default:
		c.met.asyncDrops.Inc()
	}
}

// runTasks runs async tasks until the cluster stops (owned by the
// Cluster: started by Start, waited for by Shutdown).
func (c *Cluster) runTasks() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case f := <-c.tasks:
			f()
		}
	}
}

// Start binds the transport and gossip ports, joins the seeds and starts the
// ring loop. The node announces itself joining; it turns active once it has
// caught up the shards it replicates.
func (c *Cluster) Start() error {
	tcfg := c.cfg.Transport
	tcfg.NodeID = c.cfg.NodeID
	tcfg.ListenAddr = c.cfg.TransportAddr
	tcfg.Handler = transport.HandlerFuncs{Request: c.handleRequest, Message: c.handleMessage}
	tcfg.Epoch = c.epoch
	tcfg.SkipEpochCheck = wire.SkipEpochCheck
	tcfg.Logger = c.cfg.Logger.With("component", "transport")
	tcfg.Faults = c.flt
	tcfg.Registerer = c.cfg.Registerer
	tcfg.Resolve = func(id string) (string, error) {
		if !c.started.Load() {
			return "", errNotStarted
		}
		return c.ml.ResolvePeer(id)
	}
	tr, err := transport.New(tcfg)
	if err != nil {
		return err
	}
	if err := tr.Start(); err != nil {
		return err
	}
	c.tr = tr
	trAddr, err := c.advertise(tr.Addr().String())
	if err != nil {
		tr.Shutdown()
		return err
	}
	gossipHost, gossipPort, err := splitHostPort(c.cfg.GossipAddr)
	if err != nil {
		tr.Shutdown()
		return err
	}
	mcfg := c.cfg.Membership
	mcfg.NodeID = c.cfg.NodeID
	mcfg.BindAddr, mcfg.BindPort = gossipHost, gossipPort
	if gossipPort == 0 {
		mcfg.BindPort = -1
	}
	if net.ParseIP(c.cfg.AdvertiseHost) != nil {
		// memberlist needs an IP; for a DNS name (a pod's stable name) it
		// advertises the private IP it finds, which peers reach as well.
		mcfg.AdvertiseAddr = c.cfg.AdvertiseHost
	}
	mcfg.PeerAddr, mcfg.ClientAddr, mcfg.AdminAddr = trAddr, c.cfg.ClientAddr, c.cfg.AdminAddr
	mcfg.Version = c.cfg.Version
	mcfg.State = ring.StateJoining
	mcfg.Seeds = c.cfg.Seeds
	mcfg.Logger = c.cfg.Logger
	ml, err := membership.New(mcfg)
	if err != nil {
		tr.Shutdown()
		return err
	}
	if err := ml.Start(); err != nil {
		tr.Shutdown()
		return err
	}
	c.ml = ml
	// memberlist's local node record is rewritten by every state change:
	// read its address once, now.
	c.gossipAddr = ml.Addr()
	if err := c.awaitJoin(); err != nil {
		_ = ml.Shutdown()
		tr.Shutdown()
		return err
	}
	c.rebuild()
	if len(c.ml.Snapshot().Members) <= 1 {
		// Alone: there is nobody to catch up from, every shard is ready
		// before the first client arrives.
		c.rep.CatchUpAlone()
	}
	c.started.Store(true)
	c.wg.Go(c.loop)
	c.wg.Go(c.runTasks)
	c.wg.Go(c.probeLoop)
	c.rep.Start()
	return nil
}

// awaitJoin waits until a seed answered and the roster shows another node,
// so the first placement this node computes is the cluster's and not a
// cluster of one (which would make it catch up from nobody and coordinate
// everything). Without seeds it returns at once. A bootstrapping node whose
// seeds do not answer within JoinWait forms the cluster alone; any other
// node keeps waiting (not ready). It returns the membership's refusal when
// the cluster refused this node for good (duplicate id, other settings).
func (c *Cluster) awaitJoin() error {
	if len(c.cfg.Seeds) == 0 {
		return nil
	}
	deadline := time.Now().Add(c.cfg.JoinWait)
	warned := false
	for {
		if c.ml.Joined() && len(c.ml.Snapshot().Members) > 1 {
			return nil
		}
		if time.Now().After(deadline) {
			switch {
			case c.ml.Joined():
				return nil // a seed answered (ourselves, in a one-node cluster)
			case c.cfg.Bootstrap:
				c.log.Info("No seed answered; forming the new cluster alone", "seeds", c.cfg.Seeds)
				return nil
			case !warned:
				// Alone this node would form a second cluster next to
				// the one it belongs to: keep trying, not ready.
				c.log.Warn("No seed answered; waiting for the cluster (not ready until a seed answers)", "seeds", c.cfg.Seeds)
				warned = true
			}
		}
		select {
		case <-c.ml.Refused():
			return fmt.Errorf("cluster: join refused: %w", c.ml.Err())
		case <-c.ml.Changes():
		case <-time.After(20 * time.Millisecond):
		case <-c.ctx.Done():
			return nil
		}
	}
}

// advertise returns the address other nodes dial for a bound one: the
// AdvertiseHost if set, else the bind host, else (bound to all interfaces)
// this machine's private IP, as memberlist picks it.
func (c *Cluster) advertise(bound string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", fmt.Errorf("cluster: address %q: %w", bound, err)
	}
	if c.cfg.AdvertiseHost != "" {
		host = c.cfg.AdvertiseHost
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		priv, err := sockaddr.GetPrivateIP()
		if err != nil || priv == "" {
			return "", fmt.Errorf("cluster: bound to %s and no private IP found: set an advertise host", bound)
		}
		host = priv
	}
	return net.JoinHostPort(host, port), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("cluster: address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, p, nil
}

// GossipAddr returns the bound gossip address (after Start).
func (c *Cluster) GossipAddr() string { return c.gossipAddr }

// TransportAddr returns the bound transport address (after Start).
func (c *Cluster) TransportAddr() string { return c.tr.Addr().String() }

// errNotStarted answers admin calls that need membership before Start
// finished (the node is still waiting for its cluster).
var errNotStarted = wire.ErrNotStarted

// Faults returns the fault injector, or nil without FaultInjection.
func (c *Cluster) Faults() *transport.Faults { return c.flt }

// Quiesce stops coordinating before a shutdown: requests for shards this
// node coordinates are answered "not ready" (peers retry them at the next
// replica) and local ones go to the other replicas; the leases it holds
// are released, so the next replicas need not wait them out. Replication
// to this node continues until Shutdown.
func (c *Cluster) Quiesce() { c.rep.Quiesce(c.started.Load()) }

// Shutdown leaves nothing behind: it stops the loops, gossip and the
// transport. Other nodes see this node die; its replicas stay its own
// (membership is not ownership).
func (c *Cluster) Shutdown() {
	c.cancel()
	c.hub.Shutdown()
	if c.ml != nil {
		_ = c.ml.Shutdown()
	}
	c.wg.Wait()
	c.rep.Shutdown()
	if c.tr != nil {
		c.tr.Shutdown()
	}
}

func (c *Cluster) epoch() uint64 {
	if r := c.ring.Load(); r != nil {
		return r.Epoch()
	}
	return 0
}

// loop rebuilds the ring after each membership change.
func (c *Cluster) loop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.ml.Changes():
			c.rebuild()
		}
	}
}

// rebuild installs the ring of the current membership snapshot and starts
// what the change calls for: syncs of newly replicated shards,
// re-registration of this node's sessions, forgetting dead gateways.
func (c *Cluster) rebuild() {
	snap := c.ml.Snapshot()
	rg, err := ring.New(ring.Config{Shards: c.cfg.Shards, ReplicationFactor: c.cfg.ReplicationFactor}, snap.Epoch, snap.Roster())
	if err != nil {
		c.log.Error("Building placement failed", "err", err)
		return
	}
	old := c.ring.Load()
	oldSnap := c.snap.Load()
	if old.Epoch() == 0 {
		old, oldSnap = nil, nil // the empty placement before Start
	}
	c.snap.Store(snap)
	c.ring.Store(rg)
	c.met.epoch.Set(float64(rg.Epoch()))
	c.rep.OnRing(old, rg)
	changed := oldSnap == nil || old == nil || placementChanged(old, rg) || livenessChanged(oldSnap, snap)
	c.hub.OnRoster(snap, changed)
	if changed {
		if c.engine != nil {
			c.engine.ForgetTimestamps()
		}
	}
}

func placementChanged(a, b *ring.Ring) bool { return a.Signature() != b.Signature() }

func livenessChanged(a, b *membership.Snapshot) bool {
	if len(a.Members) != len(b.Members) {
		return true
	}
	for i := range a.Members {
		if a.Members[i].ID != b.Members[i].ID || a.Members[i].Live != b.Members[i].Live {
			return true
		}
	}
	return false
}

// live reports gossip liveness (self is always live).
func (c *Cluster) live(id string) bool {
	if id == c.cfg.NodeID {
		return true
	}
	s := c.snap.Load()
	return s != nil && s.IsLive(id)
}

// coordinators returns the live replicas of shard in preference order: the
// first that is caught up coordinates. Replicas this node recently failed
// to reach (suspects: partitioned or hung, though gossip still sees them)
// go last, so requests do not wait on them again and again. When every
// replica is live and none is suspected (the common case, asked on every
// command) it is the ring's own list, shared, not a copy.
func (c *Cluster) coordinators(shard uint16) []string {
	replicas := c.ring.Load().Replicas(int(shard))
	if c.allUsable(replicas) {
		return replicas
	}
	var out, suspects []string
	for _, id := range replicas {
		switch {
		case !c.live(id):
		case c.suspected(id):
			suspects = append(suspects, id)
		default:
			out = append(out, id)
		}
	}
	return append(out, suspects...)
}

// allUsable reports whether every node of ids is live and this node
// suspects none.
func (c *Cluster) allUsable(ids []string) bool {
	for _, id := range ids {
		if !c.live(id) {
			return false
		}
	}
	c.suspectMu.Lock()
	none := len(c.suspects) == 0
	c.suspectMu.Unlock()
	return none
}

// noteCall records the outcome of a call to peer: failures that suggest it
// is unreachable make it a suspect, a success clears it.
func (c *Cluster) noteCall(peer string, err error) {
	if err == nil {
		// A peer that was cut off may have had its shards coordinated by
		// others meanwhile (or coordinated some itself): whoever takes a
		// lease over catches the shard up first (lease.go), so nothing
		// needs catching up here.
		c.suspectMu.Lock()
		delete(c.suspects, peer)
		delete(c.cutOff, peer)
		c.cutOffs.Store(int32(len(c.cutOff))) //nolint:gosec // at most the roster's size
		c.suspectMu.Unlock()
		if c.hub != nil {
			c.hub.Reachable(peer)
		}
		return
	}
	if errors.Is(err, transport.ErrTimeout) || errors.Is(err, transport.ErrUnavailable) ||
		errors.Is(err, transport.ErrConnectionLost) || errors.Is(err, context.DeadlineExceeded) {
		c.suspectMu.Lock()
		c.suspects[peer] = time.Now().Add(c.cfg.SuspectFor)
		if _, ok := c.cutOff[peer]; !ok {
			c.cutOff[peer] = time.Now()
			c.cutOffs.Store(int32(len(c.cutOff))) //nolint:gosec // at most the roster's size
		}
		c.suspectMu.Unlock()
	}
}

// every runs f every d on the calling goroutine until the Cluster stops
// (the loops Start runs: owned by the Cluster, stopped by Shutdown).
func (c *Cluster) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

// probeLoop pings every other live member each probeInterval.
func (c *Cluster) probeLoop() { c.every(c.cfg.ProbeInterval, c.probe) }

func (c *Cluster) probe() {
	for _, m := range c.snap.Load().Members {
		if m.ID == c.cfg.NodeID || !m.Live || !m.State.Owns() {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ProbeInterval)
		_, err := c.tr.Call(ctx, m.ID, wire.Ping, nil)
		cancel()
		c.noteCall(m.ID, err)
	}
}

func (c *Cluster) suspected(peer string) bool {
	c.suspectMu.Lock()
	defer c.suspectMu.Unlock()
	until, ok := c.suspects[peer]
	if ok && time.Now().After(until) {
		delete(c.suspects, peer)
		return false
	}
	return ok
}

// Coordinates implements conversation.Shards: this node coordinates shard
// now (it holds the shard's lease and is not stopping).
func (c *Cluster) Coordinates(shard uint16) bool { return c.rep.Coordinates(shard) }

// ConvShard implements conversation.Shards.
func (c *Cluster) ConvShard(app, cid string) uint16 {
	return uint16(ring.ConversationShard(c.cfg.Shards, app, cid))
}

// ClientShard implements conversation.Shards.
func (c *Cluster) ClientShard(app, clientID string) uint16 {
	return uint16(ring.ClientShard(c.cfg.Shards, app, clientID))
}

// Count implements conversation.Shards.
func (c *Cluster) Count() int { return c.cfg.Shards }

// Coordinated implements conversation.Shards.
func (c *Cluster) Coordinated() []uint16 { return c.rep.Coordinated() }

// Replicated returns the shards this node replicates in the current ring.
func (c *Cluster) Replicated() []int { return c.ring.Load().ShardsOf(c.cfg.NodeID) }

// Active reports whether this node has announced itself active.
func (c *Cluster) Active() bool { return c.active.Load() }

// Ring returns the current placement.
func (c *Cluster) Ring() *ring.Ring { return c.ring.Load() }

// Snapshot returns the current membership view.
func (c *Cluster) Snapshot() *membership.Snapshot { return c.snap.Load() }
