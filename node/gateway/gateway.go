package gateway

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/internal/run"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/session"
)

// Engine executes everything a logged-in session asks for beyond the session
// commands. It is implemented by *conversation.Engine (and, in a cluster, by
// the router that forwards to shard coordinators).
type Engine interface {
	Handle(ctx context.Context, c conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)
	UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error)
	PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error)
	SessionGone(app, clientID string, s conversation.SessionID, clean bool)
}

// Config configures a Gateway.
type Config struct {
	// Apps resolves appIds. Required.
	Apps *apps.Registry
	// Tokens issues and checks session tokens. Required.
	Tokens *session.Tokens
	// Logger is the component logger. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway metrics. Zero value means no metrics
	// are registered.
	Registerer prometheus.Registerer
	// IdleTimeout closes a connection (code 4107) that sent nothing for this
	// long. The SDKs send a heartbeat every 180 s. Zero value means 360 s.
	IdleTimeout time.Duration
	// LoginTimeout closes a connection (code 4108) that opened no session
	// for this long after connecting. Zero value means 120 s.
	LoginTimeout time.Duration
	// RequestTimeout bounds the execution of one command; it stays below
	// the JS SDK's 20 s request timeout so the client always gets an answer.
	// Zero value means 15 s.
	RequestTimeout time.Duration
	// WriteTimeout bounds one write to a socket (of every frame queued when
	// the writer woke up): each write has at least half of it and at most
	// all of it (the deadline is renewed when less than half is left).
	// Zero value means 10 s.
	WriteTimeout time.Duration
	// OutboundQueue is the per-connection outbound frame queue length. A
	// connection whose queue is full is a slow client and is closed (code
	// 1013). Zero value means 1024 frames.
	OutboundQueue int
	// InboundQueue is the per-connection queue of decoded commands waiting
	// for the worker. A client that floods beyond it is closed (code 1008).
	// Zero value means 256 commands.
	InboundQueue int
	// MaxSessionsPerConn bounds the sessions logged in on one socket. Zero
	// value means 64.
	MaxSessionsPerConn int
	// MaxConnectionsPerIP bounds the open WebSocket connections from one
	// source address; one more is refused with HTTP 429 before the upgrade.
	// Zero value means 2000 (room for a large NAT); negative means no
	// limit.
	MaxConnectionsPerIP int
	// ConnectionsPerSecondPerIP is the rate of new WebSocket connections
	// from one source address, with bursts of ConnectionBurstPerIP; beyond
	// it HTTP 429 before the upgrade. Zero values mean 100/s and 400 (a
	// whole office reconnecting after a node restart); a negative rate
	// means no limit.
	ConnectionsPerSecondPerIP float64
	ConnectionBurstPerIP      int
	// Now is the clock. Zero value means time.Now.
	Now func() time.Time
	// Presence, if set, is told about sessions opening and closing on
	// this node and answers session/query for the whole cluster. Nil means
	// this node is the whole cluster.
	Presence Presence
	// Workers bounds the warm worker goroutines the gateway keeps for its
	// sockets' bursts of work (running a socket's queued commands, writing
	// its queued frames): a burst runs on an idle warm worker, whose stack
	// the previous bursts grew, instead of a fresh goroutine. With every
	// warm worker busy a burst gets a goroutine of its own that ends with
	// it (nothing waits for a worker). A worker idle for WorkerIdle exits.
	// A parked worker's stack is shrunk by the garbage collector like any
	// goroutine's, so the bound caps how many goroutines are kept, each
	// with a small stack while idle. Zero value means 1024 (commands in
	// flight are the command rate times their latency: 3,000/s at 100 ms
	// is 300).
	Workers int
	// WorkerIdle is how long a warm worker waits for work before it exits.
	// Zero value means 10 s.
	WorkerIdle time.Duration
}

// Presence tracks clients' sessions beyond this node (the cluster's session
// registry). Opened runs before the login response is sent (so pushes to
// the client are routed here by the time it acts) and may block briefly;
// it returns the client's sessions on other nodes that hold the same tag
// have been told to close. Closed must not block.
type Presence interface {
	Opened(app, clientID, tag, deviceID string, s conversation.SessionID)
	Closed(app, clientID string, s conversation.SessionID)
	Online(app string, clientIDs []string) []string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 360 * time.Second
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = 120 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.OutboundQueue == 0 {
		c.OutboundQueue = 1024
	}
	if c.InboundQueue == 0 {
		c.InboundQueue = 256
	}
	if c.MaxSessionsPerConn == 0 {
		c.MaxSessionsPerConn = 64
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = 2000
	}
	if c.ConnectionsPerSecondPerIP == 0 {
		c.ConnectionsPerSecondPerIP = 100
	}
	if c.ConnectionBurstPerIP == 0 {
		c.ConnectionBurstPerIP = 400
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Workers == 0 {
		c.Workers = 1024
	}
	if c.WorkerIdle == 0 {
		c.WorkerIdle = 10 * time.Second
	}
}

// Gateway accepts WebSocket connections and serves sessions on them.
type Gateway struct {
	cfg      Config
	engine   Engine
	log      *slog.Logger
	upgrader *gws.Upgrader
	reg      *registry
	metrics  *metrics
	limits   *limiters

	nextConn    atomic.Uint64
	nextSession atomic.Uint64
	draining    atomic.Bool

	// ctx is the gateway's lifetime, cancelled by Shutdown and the parent of
	// every request context; it is not a request context.
	ctx    context.Context //nolint:containedctx // lifetime context owned by the Gateway
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// pool runs the sockets' workers and writers (conn.startWorker,
	// conn.startWriter) on warm goroutines.
	pool *run.Pool

	connsMu sync.Mutex
	conns   map[*conn]struct{}
	// sweepOnce starts the sweeper with the first socket.
	sweepOnce sync.Once
}

var (
	_               gws.Event              = (*handler)(nil)
	_               conversation.Deliverer = (*Gateway)(nil)
	_               http.Handler           = (*Gateway)(nil)
	closeSlowClient uint16                 = 1013
	closeFlood      uint16                 = 1008
)

// New returns a gateway. SetEngine must be called before it serves.
func New(cfg Config) (*Gateway, error) {
	if cfg.Apps == nil || cfg.Tokens == nil {
		return nil, errors.New("gateway: Apps and Tokens are required")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:    cfg,
		log:    cfg.Logger,
		reg:    newRegistry(),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
		limits: newLimiters(&cfg),
		pool:   run.NewPool(cfg.Workers, cfg.WorkerIdle),
	}
	g.metrics = newMetrics(cfg.Registerer, g)
	g.upgrader = gws.NewUpgrader(&handler{g: g}, &gws.ServerOption{
		SubProtocols:        protocol.Subprotocols,
		ReadMaxPayloadSize:  protocol.MaxFrameSize,
		WriteMaxPayloadSize: MaxOutFrameSize,
		HandshakeTimeout:    10 * time.Second,
		Recovery:            gws.Recovery,
		Logger:              gwsLogger{g.log},
		NewSession:          newOneValue,
	})
	// Session ids are unique across the cluster's nodes (a push names the
	// session to skip by id): random high bits per process, a counter below.
	g.nextSession.Store(rand.Uint64() << 32) //nolint:gosec // uniqueness, not secrecy
	return g, nil
}

// SetEngine installs the engine. It must be called once, before serving.
func (g *Gateway) SetEngine(e Engine) { g.engine = e }

// ServeHTTP upgrades a WebSocket request on any path.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.ctx.Err() != nil || g.draining.Load() {
		http.Error(w, "node is draining, connect to another node", http.StatusServiceUnavailable)
		return
	}
	ip := remoteIP(r)
	if !g.limits.admit(w, ip) {
		g.metrics.rateLimited.WithLabelValues("connection").Inc()
		return
	}
	ws, bc, err := g.upgrade(w, r)
	if err != nil {
		g.limits.connsOpen.Release(ip)
		g.metrics.handshakeFailures.Inc()
		if g.log.Enabled(r.Context(), slog.LevelDebug) {
			g.log.Debug("Rejecting WebSocket handshake", "remote", r.RemoteAddr, "err", err)
		}
		return
	}
	// The HTTP server's write deadline for the request would otherwise
	// stay on the socket; the writer sets one per frame.
	_ = ws.SetWriteDeadline(time.Time{})
	c := newConn(g, ws, bc, ip)
	if !g.track(c) {
		_ = ws.WriteClose(1001, []byte("shutting down"))
		return
	}
	g.sweepOnce.Do(func() { g.goFunc(g.sweep) })
	g.goFunc(ws.ReadLoop)
}

// sweepInterval is how often the sweeper checks the sockets' idle and login
// timeouts: a quarter of the shorter one, so a socket is closed at most
// 25% late.
func (g *Gateway) sweepInterval() time.Duration {
	return max(min(g.cfg.IdleTimeout, g.cfg.LoginTimeout)/4, 5*time.Millisecond)
}

// sweep closes sockets past their idle or login timeout until the gateway
// stops. One goroutine for all sockets (started with the first one) instead
// of timers in each.
func (g *Gateway) sweep() {
	t := time.NewTicker(g.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case now := <-t.C:
			for _, c := range g.snapshotConns() {
				c.expired(now)
			}
		}
	}
}

// readBufferSize is the per-socket read buffer: it holds a frame's header
// and a small command whole (one read system call); the rest of a larger
// frame is read straight into its message buffer (a second read). Every
// idle socket keeps it for its life.
const readBufferSize = 512

// upgrade hijacks the HTTP connection and upgrades it to a WebSocket whose
// socket is a batchConn (the writer's batched writes), with a small read
// buffer.
func (g *Gateway) upgrade(w http.ResponseWriter, r *http.Request) (*gws.Conn, *batchConn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "WebSocket upgrade not supported here", http.StatusInternalServerError)
		return nil, nil, errors.New("gateway: response writer cannot hijack")
	}
	netConn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	bc := newBatchConn(netConn)
	br := brw.Reader
	if br.Buffered() == 0 {
		// Nothing read ahead of the handshake: a smaller reader than the
		// HTTP server's.
		br = bufio.NewReaderSize(netConn, readBufferSize)
	}
	ws, err := g.upgrader.UpgradeFromConn(bc, br, r)
	return ws, bc, err
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header.Get("Connection"), "upgrade") &&
		headerHasToken(r.Header.Get("Upgrade"), "websocket")
}

func (g *Gateway) goFunc(f func()) {
	g.wg.Go(f)
}

func (g *Gateway) track(c *conn) bool {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) untrack(c *conn) {
	g.connsMu.Lock()
	delete(g.conns, c)
	g.connsMu.Unlock()
}

func (g *Gateway) snapshotConns() []*conn {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	out := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		out = append(out, c)
	}
	return out
}

// Connections returns the number of open client connections.
func (g *Gateway) Connections() int {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	return len(g.conns)
}

// Goaway tells every connected client to reconnect elsewhere and refuses new
// connections from now on. It is the first step of draining a node.
func (g *Gateway) Goaway() {
	g.draining.Store(true)
	frame := protocol.Push("", pb.CommandType_goaway, nil)
	frame.PeerId = nil
	for _, c := range g.snapshotConns() {
		c.sendCommand(frame)
	}
}

// Resume accepts connections again after Goaway (a cancelled drain).
func (g *Gateway) Resume() { g.draining.Store(false) }

// Shutdown sends goaway, waits until clients disconnected or ctx is done,
// then closes the remaining connections and waits for every goroutine.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.Goaway()
	tick := time.NewTicker(20 * time.Millisecond)
	for g.Connections() > 0 {
		select {
		case <-ctx.Done():
			g.closeAll()
		case <-tick.C:
			continue
		}
		break
	}
	tick.Stop()
	g.cancel()
	g.closeAll()
	// Every socket's queues are closed now: no worker or writer starts
	// again (a late start would get a goroutine of its own, still waited for).
	g.pool.Close()
	g.wg.Wait()
	g.pool.Wait()
}

func (g *Gateway) closeAll() {
	for _, c := range g.snapshotConns() {
		c.close(1001, "server shutting down")
	}
}
