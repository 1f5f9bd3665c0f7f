package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/cluster"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/gateway"
	"github.com/imcluster/imcluster/node/hooks"
	"github.com/imcluster/imcluster/node/httpapi"
	"github.com/imcluster/imcluster/node/push"
	"github.com/imcluster/imcluster/node/session"
	"github.com/imcluster/imcluster/node/storage"
	"github.com/imcluster/imcluster/node/store"
)

// Component names for child loggers.
const (
	logComponentNode    = "node"
	logComponentStore   = "store"
	logComponentGateway = "gateway"
	logComponentConv    = "conversation"
	logComponentHTTP    = "http"
)

// Client-port HTTP limits beyond Config.HTTPRequestTimeout (60 s: a 3 MiB
// upload at 64 KB/s) and HTTPIdleTimeout: a request's headers must arrive
// within 10 s (or the request timeout, if shorter) and are bounded at
// 64 KiB (the SDKs send well under 4 KiB). WebSocket connections set their
// own deadlines once upgraded (gateway: idle timeout and per-frame write
// timeout).
const (
	clientReadHeaderTimeout = 10 * time.Second
	clientMaxHeaderBytes    = 64 << 10
)

// Node is one chat node. Start and Shutdown may each be called once.
type Node struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	store    *store.Store
	identity *identity
	cluster  *cluster.Cluster
	engine   *conversation.Engine
	gateway  *gateway.Gateway
	storage  *storage.Service
	hooks    *hooks.Hooks
	// creds are the cluster credentials (security.go).
	creds credentials

	clientLn, adminLn net.Listener
	clientSrv         *http.Server
	adminSrv          *http.Server

	shutdownOnce sync.Once

	ready atomic.Bool
	// diskFull is the store's injected disk-full switch
	// (FaultDiskFullAfter).
	diskFull atomic.Bool
	// faultDiskFree is the free space (MiB) the store's guard is made to
	// see (FaultDiskFreeMiB, POST /admin/v1/faults); negative: the real
	// one.
	faultDiskFree atomic.Int64
	draining      atomic.Bool

	ctx    context.Context //nolint:containedctx // lifetime context owned by the Node, cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and builds a node. Nothing listens until Start.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			buildInfo())
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{cfg: cfg, log: cfg.Logger.With("component", logComponentNode, "node", cfg.NodeID), reg: reg, ctx: ctx, cancel: cancel}, nil
}

// buildInfo is imnode_build_info{version,goversion} 1: the version of every
// node in one query (e.g. during a rolling upgrade).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "imnode_build_info",
		Help: "Always 1; the labels name the imnode version and the Go version it was built with."}, []string{"version", "goversion"})
	g.WithLabelValues(Version, runtime.Version()).Set(1)
	return g
}

// Start opens the store and starts serving clients and the admin API.
func (n *Node) Start() error {
	registry, err := apps.NewRegistry(n.cfg.Apps)
	if err != nil {
		return err
	}
	scfg := store.Config{Dir: n.cfg.DataDir, Logger: n.cfg.Logger.With("component", logComponentStore),
		ReadCacheSize: n.cfg.StoreReadCacheSize, AbsentFilterSize: n.cfg.StoreDedupFilterSize, Registerer: n.reg}
	if n.cfg.FaultDiskFullAfter > 0 {
		scfg.FaultDiskFull = &n.diskFull
	}
	if err := n.diskGuardConfig(&scfg); err != nil {
		return err
	}
	st, err := store.Open(scfg)
	if err != nil {
		return err
	}
	n.store = st
	if err := n.loadCredentials(); err != nil {
		return n.abort(err)
	}
	if n.cfg.BackupDir != "" {
		if err := os.MkdirAll(n.cfg.BackupDir, 0o700); err != nil {
			return n.abort(fmt.Errorf("node: backup dir: %w", err))
		}
	}
	n.warnInsecure()
	form, err := n.checkIdentity(st)
	if err != nil {
		return n.abort(err)
	}
	n.identity = &identity{dir: n.cfg.DataDir, id: form.id}
	var lc net.ListenConfig
	if n.clientLn, err = lc.Listen(n.ctx, "tcp", n.cfg.ClientAddr); err != nil {
		return n.abort(fmt.Errorf("node: listen client %s: %w", n.cfg.ClientAddr, err))
	}
	if n.adminLn, err = lc.Listen(n.ctx, "tcp", n.cfg.AdminAddr); err != nil {
		return n.abort(fmt.Errorf("node: listen admin %s: %w", n.cfg.AdminAddr, err))
	}
	ccfg := cluster.DefaultConfig()
	if n.cfg.LocalTimings {
		ccfg = cluster.DefaultLocalConfig()
	}
	ccfg.NodeID = n.cfg.NodeID
	ccfg.Store = st
	ccfg.Shards = n.cfg.Shards
	ccfg.ReplicationFactor = n.cfg.ReplicationFactor
	ccfg.WriteQuorum = n.cfg.WriteQuorum
	ccfg.GossipAddr = n.cfg.GossipAddr
	ccfg.TransportAddr = n.cfg.TransportAddr
	ccfg.AdvertiseHost = n.cfg.AdvertiseHost
	ccfg.Seeds = n.cfg.Join
	ccfg.Bootstrap = form.bootstrap
	if off := n.cfg.FaultClockOffset; off != 0 {
		ccfg.Replica.Now = func() time.Time { return time.Now().Add(off) }
		n.log.Warn("Fault injection: the lease and timestamp clock is offset", "offset", off.String())
	}
	n.formationConfig(&ccfg.Membership, form)
	ccfg.ClientAddr = n.advertised(n.clientLn.Addr().String())
	ccfg.AdminAddr = n.advertised(n.adminLn.Addr().String())
	ccfg.Version = Version
	ccfg.FaultInjection = n.cfg.FaultInjection
	ccfg.Logger = n.cfg.Logger
	ccfg.Registerer = n.reg
	if n.creds.peer != nil {
		ccfg.Transport.TLS = n.creds.peer
	}
	ccfg.Transport.Authorize = n.authorizePeer
	ccfg.Membership.Keyring = n.creds.keyring
	cl, err := cluster.New(ccfg)
	if err != nil {
		return n.abort(err)
	}
	n.cluster = cl
	kv := cl.KV()
	tokens := session.NewTokens(kv, cl.ClientShard, n.cfg.SessionTokenTTL, nil)
	n.hooks, err = hooks.New(hooks.Config{Apps: registry, Logger: n.cfg.Logger, Registerer: n.reg})
	if err != nil {
		return n.abort(err)
	}
	gw, err := gateway.New(gateway.Config{
		Apps:         registry,
		Tokens:       tokens,
		Logger:       n.cfg.Logger.With("component", logComponentGateway),
		Registerer:   n.reg,
		IdleTimeout:  n.cfg.IdleTimeout,
		LoginTimeout: n.cfg.LoginTimeout,
		Presence:     hookPresence{Presence: cl.Presence(), hooks: n.hooks},

		MaxConnectionsPerIP:       n.cfg.MaxConnectionsPerIP,
		ConnectionsPerSecondPerIP: n.cfg.ConnectionsPerSecondPerIP,
		ConnectionBurstPerIP:      int(4 * max(n.cfg.ConnectionsPerSecondPerIP, 0)),
	})
	if err != nil {
		return n.abort(err)
	}
	n.gateway = gw
	engine, err := conversation.New(conversation.Config{
		Store:       kv,
		Shards:      cl,
		Deliverer:   cl.Deliverer(),
		Logger:      n.cfg.Logger.With("component", logComponentConv),
		Registerer:  n.reg,
		Retention:   n.cfg.Retention,
		Hooks:       n.hooks,
		SysMessages: n.hooks,
		Push:        push.NewService(registry, n.cfg.NodeID, nil),
		QueryLimits: func(app string) conversation.QueryLimits {
			a, ok := registry.Lookup(app)
			if !ok {
				return conversation.DefaultQueryLimits
			}
			return conversation.QueryLimits{
				OwnConversationsOnly: a.QueryOwnConversationsOnly,
				ScanBudget:           a.Limits.QueryScanBudget,
				Concurrent:           a.Limits.ConcurrentQueries,
			}
		},
	})
	if err != nil {
		return n.abort(err)
	}
	n.engine = engine
	cl.SetEngine(engine)
	cl.SetGateway(gw)
	gw.SetEngine(cl.Router())
	n.storage, err = storage.New(storage.Config{
		Store: kv,
		LookupApp: func(id string) (storage.App, bool) {
			a, ok := registry.Lookup(id)
			if !ok {
				return storage.App{}, false
			}
			return storage.App{
				ID: a.ID, Key: a.Key, MasterKey: a.MasterKey,
				AccountRequestsPerMinutePerIP: a.Limits.AccountRequestsPerMinutePerIP,
				FailedLoginsPerUser:           a.Limits.FailedLoginsPerUser,
			}, true
		},
		BaseURL: func(r *http.Request) string {
			base, _ := n.publicBase(r)
			return base
		},
		Logger: n.cfg.Logger.With("component", "storage"),
	})
	if err != nil {
		return n.abort(err)
	}
	api := httpapi.New(httpapi.Config{
		Apps:        registry,
		Tokens:      tokens,
		Engine:      conversation.NewServerAPI(engine, cl.Router().Handle),
		Storage:     n.storage,
		Kicker:      cl,
		Presence:    cl.Deliverer(),
		PublicURL:   n.cfg.PublicURL,
		HostAllowed: n.hostAllowed,
		Logger:      n.cfg.Logger.With("component", logComponentHTTP),
	})
	// The admin port serves first: /healthz answers while the node waits
	// for its cluster (Start may wait for a seed) and catches up.
	n.adminSrv = &http.Server{Handler: n.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	n.serve(n.adminSrv, n.adminLn)
	if err := cl.Start(); err != nil {
		return n.abort(err)
	}
	engine.Start(n.ctx)
	n.wg.Go(func() { n.watchCredentials(n.ctx) })
	n.wg.Go(func() { n.sweepTokens(n.ctx, cl, registry, tokens) })

	if n.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
		if err != nil {
			return n.abort(fmt.Errorf("node: load TLS key pair: %w", err))
		}
		n.clientLn = tls.NewListener(n.clientLn, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	n.clientSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if gateway.IsUpgrade(r) {
				gw.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: min(clientReadHeaderTimeout, n.cfg.HTTPRequestTimeout),
		ReadTimeout:       n.cfg.HTTPRequestTimeout,
		WriteTimeout:      n.cfg.HTTPRequestTimeout,
		IdleTimeout:       n.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    clientMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.serve(n.clientSrv, n.clientLn)
	n.ready.Store(true)
	if d := n.cfg.FaultDiskFullAfter; d > 0 {
		n.log.Warn("Fault injection: the disk fills up", "after", d.String())
		n.wg.Go(func() {
			select {
			case <-time.After(d):
				n.log.Warn("Fault injection: the disk is full now")
				n.diskFull.Store(true)
			case <-n.ctx.Done():
			}
		})
	}
	n.log.Info("Serving", "client", n.clientLn.Addr().String(), "admin", n.adminLn.Addr().String(),
		"gossip", cl.GossipAddr(), "transport", cl.TransportAddr(),
		"version", Version, "apps", registry.Len(), "shards", n.cfg.Shards,
		"replicationFactor", n.cfg.ReplicationFactor, "writeQuorum", n.cfg.WriteQuorum)
	return nil
}

// diskGuardConfig sets the store's free-space reserve (StoreMinFreeBytes,
// its default from the data disk's size) and, with fault injection, the
// free space its guard sees.
func (n *Node) diskGuardConfig(scfg *store.Config) error {
	n.faultDiskFree.Store(-1)
	if v := n.cfg.FaultDiskFreeMiB; v != nil {
		n.faultDiskFree.Store(*v)
		n.log.Warn("Fault injection: the data disk's free space", "freeMiB", *v)
	}
	if n.cfg.FaultDiskFreeMiB != nil || n.cfg.FaultInjection {
		scfg.StatFS = func(dir string) (uint64, error) {
			if v := n.faultDiskFree.Load(); v >= 0 {
				return uint64(v) << 20, nil
			}
			free, _, err := store.DiskSpace(dir)
			return free, err
		}
	}
	scfg.MinFreeBytes = n.cfg.StoreMinFreeBytes
	if scfg.MinFreeBytes != 0 {
		return nil
	}
	// The data directory may not exist yet: its nearest existing parent is
	// on the same filesystem unless a mount sits between them.
	dir := n.cfg.DataDir
	for {
		_, size, err := store.DiskSpace(dir)
		if err == nil {
			scfg.MinFreeBytes = int64(store.DefaultMinFree(size)) //nolint:gosec // at most 1 GiB
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("node: size of the data disk: %w", err)
		}
		dir = parent
	}
}

func (n *Node) serve(srv *http.Server, ln net.Listener) {
	n.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server stopped", "addr", ln.Addr().String(), "err", err)
		}
	})
}

// abort releases what Start opened before it failed.
func (n *Node) abort(err error) error {
	for _, ln := range []net.Listener{n.clientLn, n.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if n.engine != nil {
		n.engine.Stop()
	}
	if n.hooks != nil {
		n.hooks.Stop()
	}
	if n.cluster != nil {
		n.cluster.Shutdown()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	n.cancel()
	return err
}

// GossipAddr returns the bound gossip address (after Start).
func (n *Node) GossipAddr() string { return n.cluster.GossipAddr() }

// TransportAddr returns the bound peer transport address (after Start).
func (n *Node) TransportAddr() string { return n.cluster.TransportAddr() }

// advertised replaces the host of a bound address by AdvertiseHost when set.
func (n *Node) advertised(addr string) string {
	if n.cfg.AdvertiseHost == "" {
		return addr
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(n.cfg.AdvertiseHost, port)
}

// ClientAddr returns the bound client address (after Start).
func (n *Node) ClientAddr() net.Addr { return n.clientLn.Addr() }

// AdminAddr returns the bound admin address (after Start).
func (n *Node) AdminAddr() net.Addr { return n.adminLn.Addr() }

// Shutdown sends goaway to clients, waits up to ShutdownGrace (or ctx) for
// them to leave, stops every goroutine and closes the store. Every
// acknowledged write is already durable, so a Shutdown cut short loses
// nothing. Calls after the first return nil at once.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.shutdownOnce.Do(func() { err = n.shutdown(ctx) })
	return err
}

func (n *Node) shutdown(ctx context.Context) error {
	n.ready.Store(false)
	n.cluster.Quiesce()
	n.log.Info("Shutting down")
	grace, cancel := context.WithTimeout(ctx, n.cfg.ShutdownGrace)
	defer cancel()
	n.gateway.Shutdown(grace)
	_ = n.clientSrv.Shutdown(grace)
	_ = n.adminSrv.Shutdown(grace)
	_ = n.clientSrv.Close()
	_ = n.adminSrv.Close()
	n.cancel()
	n.engine.Stop()
	n.hooks.Stop()
	n.cluster.Shutdown()
	n.wg.Wait()
	return n.store.Close()
}
