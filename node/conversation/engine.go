package conversation

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/internal/run"
	"github.com/imcluster/imcluster/node/limit"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// SessionID identifies one live session on this node. It is unique per live
// session; 0 means "no session" (REST calls, system actions).
type SessionID uint64

// Caller is the session a request comes from.
type Caller struct {
	App      string
	ClientID string
	Session  SessionID
	// ConfigBitmap is the session's capability bitmap (spec 3.1.3).
	ConfigBitmap int64
}

// Deliverer is implemented by the gateway. Deliver must never block: it
// copies cmd per recipient session, sets peerId itself and skips the session
// except (0 = skip none). Online returns the subset of clientIDs that has at
// least one open session. Both must be safe for concurrent use.
type Deliverer interface {
	Deliver(app string, clientIDs []string, except SessionID, cmd *pb.GenericCommand)
	Online(app string, clientIDs []string) []string
}

// Shards maps conversations and clients to storage shards. It must be safe
// for concurrent use and deterministic.
type Shards interface {
	ConvShard(app, cid string) uint16
	ClientShard(app, clientID string) uint16
	// Count is the shard count S: queries that span shards visit 0..S-1.
	Count() int
	// Coordinated returns the shards this node coordinates now; background
	// work (retention, expiry) runs on these only, so each shard is swept
	// by one node.
	Coordinated() []uint16
	// Coordinates reports whether this node coordinates shard now. A send
	// assigns its timestamp only while it does: one node at a time orders
	// a conversation.
	Coordinates(shard uint16) bool
}

// ErrNotCoordinator answers a send that reached the engine of a node that
// no longer coordinates the conversation's shard (its lease ran out while
// the command waited): nothing was written, and the caller runs the command
// again at the shard's coordinator.
var ErrNotCoordinator = errors.New("conversation: this node does not coordinate the conversation now")

// Config configures an Engine.
type Config struct {
	// Store is the node's database. Required.
	Store store.KV
	// Shards places keys. Required.
	Shards Shards
	// Deliverer sends pushes to sessions. Required.
	Deliverer Deliverer
	// Clock returns the current time. Zero value means time.Now.
	Clock func() time.Time
	// Logger is the parent logger. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Zero value means metrics are
	// created but not registered.
	Registerer prometheus.Registerer
	// Retention is how long stored messages and patches are kept. Zero value
	// means 180 days (LeanCloud's documented retention).
	Retention time.Duration
	// NotificationRetention is how long reliable notifications are kept for
	// GET /1.1/rtm/notifications. Zero value means 30 days.
	NotificationRetention time.Duration
	// SweepInterval is the period of the retention and temporary-conversation
	// expiry sweeper (expiry itself is enforced on every access; the sweeper
	// reclaims space). Zero value means 10 minutes.
	SweepInterval time.Duration
	// DedupWindow is how long a (conversation, sender, dt) de-duplication token
	// is remembered. Zero value means 24 hours.
	DedupWindow time.Duration
	// MaxMembers is the member limit of normal conversations. Zero value means
	// 500 (spec section 5).
	MaxMembers int
	// MaxTempMembers is the member limit of temporary conversations. Zero
	// value means 10.
	MaxTempMembers int
	// DefaultTempTTL is the TTL of temporary conversations created without
	// tempConvTTL. Zero value means 86400 s.
	DefaultTempTTL time.Duration
	// MaxTempTTL caps tempConvTTL. Zero value means 30 days.
	MaxTempTTL time.Duration
	// SysMessages receives the messages clients send to system
	// conversations. Zero value means they are acknowledged and dropped.
	SysMessages SysMessageSink
	// Hooks calls the apps' server hooks. Zero value means none.
	Hooks Hooks
	// Push sends offline pushes. Zero value means none are queued.
	Push PushSender
	// PushInterval is how often the push loop looks for due pushes. Zero
	// value means 1 s.
	PushInterval time.Duration
	// QueryLimits returns an app's conv/query limits. Nil means
	// DefaultQueryLimits for every app.
	QueryLimits func(app string) QueryLimits
	// OutboxWait is how long a command waits, after its own shard
	// committed, for its effects in other shards (outbox.go) before it
	// answers anyway (they are applied later). Zero value means 1 s.
	OutboxWait time.Duration
	// OutboxInterval is the period of the outbox drainer, which retries
	// effects that could not be applied and applies those a previous
	// coordinator left. Zero value means 1 s.
	OutboxInterval time.Duration
}

// QueryLimits bound the conv/query commands of one app on one node.
type QueryLimits struct {
	// OwnConversationsOnly limits results to the caller's conversations
	// and chat rooms.
	OwnConversationsOnly bool
	// ScanBudget bounds the conversation records one query examines; a
	// query that needs more is answered 4310 naming the budget. Zero or
	// less means DefaultQueryLimits.ScanBudget.
	ScanBudget int
	// Concurrent bounds the app's queries running at once; one more is
	// answered 4318. A quarter of it (at least 1) bounds the app-wide
	// queries that no index serves (scanConcurrency). Zero or less means
	// no limit.
	Concurrent int
}

// DefaultQueryLimits apply when Config.QueryLimits is nil (the reasons for
// the numbers are at apps.DefaultLimits).
var DefaultQueryLimits = QueryLimits{ScanBudget: 5000, Concurrent: 8}

// DefaultConfig returns a Config with every optional field at its default.
// Store, Shards and Deliverer must still be set.
func DefaultConfig() Config {
	c := Config{}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Retention == 0 {
		c.Retention = 180 * 24 * time.Hour
	}
	if c.NotificationRetention == 0 {
		c.NotificationRetention = 30 * 24 * time.Hour
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 10 * time.Minute
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 24 * time.Hour
	}
	if c.MaxMembers == 0 {
		c.MaxMembers = 500
	}
	if c.MaxTempMembers == 0 {
		c.MaxTempMembers = 10
	}
	if c.DefaultTempTTL == 0 {
		c.DefaultTempTTL = 86400 * time.Second
	}
	if c.MaxTempTTL == 0 {
		c.MaxTempTTL = 30 * 24 * time.Hour
	}
	if c.PushInterval == 0 {
		c.PushInterval = time.Second
	}
	if c.OutboxWait == 0 {
		c.OutboxWait = time.Second
	}
	if c.OutboxInterval == 0 {
		c.OutboxInterval = time.Second
	}
}

// DefaultLocalConfig is DefaultConfig for tests: the sweeper and the
// outbox drainer run every 100 ms.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.SweepInterval = 100 * time.Millisecond
	c.OutboxInterval = 100 * time.Millisecond
	return c
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("conversation: Store is required")
	case c.Shards == nil:
		return errors.New("conversation: Shards is required")
	case c.Deliverer == nil:
		return errors.New("conversation: Deliverer is required")
	case c.Retention < 0 || c.NotificationRetention < 0 || c.SweepInterval < 0 || c.DedupWindow < 0 ||
		c.OutboxWait < 0 || c.OutboxInterval < 0:
		return errors.New("conversation: durations must not be negative")
	case c.MaxMembers < 0 || c.MaxTempMembers < 0:
		return errors.New("conversation: member limits must not be negative")
	}
	return nil
}

const logComponent = "conversation"

// numStripes is the number of write-path mutexes. A conversation's writes
// are serialized by the stripe its (app, cid) hashes to; 1024 stripes keep
// unrelated conversations from contending while costing ~100 KB.
const numStripes = 1024

// stripe serializes the write path of the conversations hashing to it
// (mu) and orders their pushes (q*): pushes are queued while mu is held, in
// commit order, and delivered after mu is released by whichever goroutine
// finds the queue not being drained. See node/LOCKING.md.
type stripe struct {
	mu sync.Mutex
	// lastTs caches the last timestamp assigned per conversation (app \x00
	// cid), including transient and in-flight messages, keeping timestamps
	// strictly increasing. inflight counts sends between timestamp
	// assignment and commit. Guarded by mu.
	lastTs   map[string]cachedTs
	inflight int
	// pendingDt holds messages with a dt between timestamp assignment and
	// commit, so a concurrent resend is answered with the same id.
	pendingDt map[string]*message
	// outbox lists the conversations whose commands under mu wrote outbox
	// entries; unlockAndDrain applies them after releasing mu. Guarded by
	// mu.
	outbox []convRef

	qmu      sync.Mutex
	queue    []push
	draining bool
	// delivering counts the pushes the drainer took off the queue and has
	// not delivered yet. Guarded by qmu.
	delivering int
	// drained, when set, is closed (and cleared) by the drainer each time
	// it delivered what it took: senders waiting for the undelivered pushes
	// to fall to maxQueuedPushes (drainBehind) wait on it. Guarded by qmu.
	drained chan struct{}
}

// maxQueuedPushes bounds the undelivered pushes of a stripe (queued or
// being delivered) for senders that do not deliver their own push
// (drainBehind): past it, such a sender waits for the drainer. There are at
// most this many plus one per sender waiting, so a room's receivers are at
// most that many fan-outs behind its senders.
const maxQueuedPushes = 4

// maxInlineFanout is the most recipients whose push a sender delivers
// itself before it is answered (drainFor).
const maxInlineFanout = 32

// cachedTs is the last timestamp assigned to a conversation, the last one
// assigned to a stored (not transient) message, and the Engine.tsEpoch they
// were assigned or checked under.
type cachedTs struct {
	ts     int64
	stored int64
	epoch  uint64
}

// push is one Deliver call. A push with a gate waits in the stripe queue
// until the gate opens (its message is durable) or is cancelled.
type push struct {
	app    string
	to     []string
	except SessionID
	cmd    *pb.GenericCommand
	gate   *gate
}

// gate holds a queued push back until the write it reports is committed.
// Its state is guarded by the stripe's qmu.
type gate struct{ state int }

const (
	gatePending = iota
	gateOpen
	gateCancelled
)

// Engine executes the conversation and message commands of the protocol.
// It is safe for concurrent use. Each conversation's write path is owned by
// one stripe mutex; per-client state by one client stripe mutex (lock order
// conversation stripe, then client stripe).
type Engine struct {
	cfg     Config
	st      store.KV
	shards  Shards
	d       Deliverer
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics

	convStripes   [numStripes]stripe
	clientStripes [numStripes]clientStripe

	// notifClock issues strictly increasing serverTs values for reliable
	// notifications so a client's cursor never skips one.
	notifMu   sync.Mutex
	notifLast int64
	// nonce makes notification keys of this process unique, so a restart
	// within the same millisecond never overwrites one.
	nonce string

	rooms  rooms
	wills  wills
	outbox outbox
	// forwardWill, if set, sends a will message at the coordinator of its
	// conversation when this node no longer coordinates it (SetWillForwarder).
	forwardWill atomic.Pointer[WillForwarder]

	// queries counts the running conv/query commands per app.
	queries *limit.Counter
	// scans counts the running app-wide conv/query commands that no
	// index serves, per app (scanConcurrency bounds them).
	scans *limit.Counter

	// tsEpoch invalidates the stripes' cached timestamps (ForgetTimestamps).
	tsEpoch atomic.Uint64
	// recent knows which recent messages asked for receipts (recent.go).
	recent recentMsgs
	// orderTidied is when the sweeper last tidied the order index of
	// every shard it swept (ms; order.go).
	orderTidied atomic.Int64

	// acks feeds the ack loop while running is set (see handleReceiverAck).
	acks    chan ackJob
	running atomic.Bool

	// run owns the background goroutines: open from Start, closed by Stop.
	run    run.Group
	cancel context.CancelFunc
}

// New creates an Engine. It does not start background work; call Start.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		st:     cfg.Store,
		shards: cfg.Shards,
		d:      cfg.Deliverer,
		now:    cfg.Clock,
		log:    cfg.Logger.With("component", logComponent),
		nonce:  randomNonce(),
		acks:   make(chan ackJob, ackQueueSize),

		queries: limit.NewCounter(),
		scans:   limit.NewCounter(),
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	e.rooms.init()
	e.wills.init()
	e.outbox.init()
	e.recent.init()
	return e, nil
}

// Start starts the engine's background work (retention sweeper, temporary
// conversation expiry, the receiver-ack loop, the outbox drainer). Stop stops it. Call each once.
func (e *Engine) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.run.Open()
	e.goFunc(func() { e.sweepLoop(ctx) })
	e.goFunc(func() { e.pushLoop(ctx) })
	e.goFunc(func() { e.ackLoop(ctx) })
	e.goFunc(func() { e.outboxLoop(ctx) })
	e.running.Store(true)
}

// goFunc runs f on an owned goroutine that Stop waits for. Before Start or
// after Stop it runs f on the caller's goroutine instead.
func (e *Engine) goFunc(f func()) { e.run.Go(f) }

// Stop stops the background work and waits for it. It does not close the
// store.
func (e *Engine) Stop() {
	e.run.Close()
	e.running.Store(false)
	if e.cancel != nil {
		e.cancel()
	}
	e.run.Wait()
	e.drainAcks()
	e.deleteApplied()
}

func (e *Engine) nowMs() int64 { return e.now().UnixMilli() }

func stripeIndex(app, id string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(app))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(id))
	return h.Sum32() % numStripes
}

func (e *Engine) convStripe(app, cid string) *stripe {
	return &e.convStripes[stripeIndex(app, cid)]
}

func (e *Engine) clientLock(app, clientID string) *sync.Mutex {
	return &e.clientStripes[stripeIndex(app, clientID)].Mutex
}

// Handle executes conv/*, direct, ack, read, logs, patch/modify and
// blacklist/* for caller c. It returns the response frame without i and
// peerId (the gateway sets them), or nil for fire-and-forget commands (ack,
// read). Client-visible failures are *protocol.Error; any other error is
// internal. Safe for concurrent use.
//
// Push ordering: pushes are handed to the Deliverer after the change is
// durable, in commit order per conversation. Pushes that also reach the
// caller's own session (conv/start, add, remove, ...) are delivered before
// Handle returns; the gateway holds a socket's pushes back while it runs that
// socket's command, so the client sees the response first.
func (e *Engine) Handle(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	start := e.now()
	m := e.metrics.forCommand(req)
	resp, err := e.dispatch(ctx, c, req)
	m.observe(e.metrics, start, e.now(), err)
	return resp, err
}

func (e *Engine) dispatch(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	if c.Server() && req.GetCmd() == pb.CommandType_data {
		return e.handleServerCall(ctx, c, req)
	}
	if from, ok := c.admin(); ok {
		return e.handleAdmin(ctx, c, from, req)
	}
	if cmd, ok := lookupCommand(req); ok {
		return cmd.handle(e, ctx, c, req)
	}
	return nil, errUnsupported(req)
}

func errUnsupported(req *pb.GenericCommand) error {
	return protocol.ErrInternal.WithDetail("unsupported command %s", commandName(req))
}

// commandName names a command for errors and metric labels. Values outside
// the schema's enums collapse to "unknown" so labels stay bounded.
func commandName(req *pb.GenericCommand) string {
	if _, ok := pb.CommandType_name[int32(req.GetCmd())]; !ok {
		return "unknown"
	}
	if _, ok := pb.OpType_name[int32(req.GetOp())]; req.Op != nil && !ok {
		return req.GetCmd().String() + "/unknown"
	}
	if req.Op != nil {
		return req.GetCmd().String() + "/" + req.GetOp().String()
	}
	return req.GetCmd().String()
}

// response builds a response frame (no i, no peerId; the gateway sets them).
func response(cmd pb.CommandType, op pb.OpType, hasOp bool) *pb.GenericCommand {
	r := &pb.GenericCommand{Cmd: cmd.Enum(), Service: int32p(protocol.ServiceIM)}
	if hasOp {
		r.Op = op.Enum()
	}
	return r
}

func convResponse(op pb.OpType, cm *pb.ConvCommand) *pb.GenericCommand {
	r := response(pb.CommandType_conv, op, true)
	r.ConvMessage = cm
	return r
}

// newPush builds a push frame without peerId (Deliver sets it).
func newPush(cmd pb.CommandType, op *pb.OpType) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: cmd.Enum(), Op: op, Service: int32p(protocol.ServiceIM)}
}

// internal wraps an internal error with context.
func internal(what string, err error) error {
	return fmt.Errorf("conversation: %s: %w", what, err)
}

// emit queues pushes of a conversation on its stripe; the caller holds
// st.mu, so queue order is commit order. drain delivers them after the caller
// releases st.mu.
func (e *Engine) emit(st *stripe, ps ...push) { e.enqueue(st, ps...) }

func (e *Engine) enqueue(st *stripe, ps ...push) {
	st.qmu.Lock()
	st.queue = append(st.queue, ps...)
	st.qmu.Unlock()
}

// drain delivers the stripe's queued pushes in order unless another
// goroutine is already doing so. It stops at a push whose gate is still
// pending; the goroutine that opens that gate drains again. It holds no lock
// while calling Deliver.
func (e *Engine) drain(st *stripe) {
	st.qmu.Lock()
	if st.draining {
		st.qmu.Unlock()
		return
	}
	st.draining = true
	st.qmu.Unlock()
	e.drainQueue(st)
}

// drainBehind is drain on an engine goroutine: the caller returns without
// waiting for the fan-out (a chat room's send answers its sender before
// the room's sockets are written), but while more than maxQueuedPushes
// pushes are undelivered it first waits for the drainer, so a sender
// answered early cannot queue pushes faster than they leave. The
// order is drain's: one drainer per stripe at a time, in queue order.
func (e *Engine) drainBehind(st *stripe) {
	st.qmu.Lock()
	for {
		if !st.draining && len(st.queue) > 0 && (st.queue[0].gate == nil || st.queue[0].gate.state != gatePending) {
			st.draining = true
			st.qmu.Unlock()
			e.goFunc(func() { e.drainQueue(st) })
			st.qmu.Lock()
			continue
		}
		if len(st.queue)+st.delivering <= maxQueuedPushes {
			st.qmu.Unlock()
			return
		}
		if st.drained == nil {
			st.drained = make(chan struct{})
		}
		ch := st.drained
		st.qmu.Unlock()
		<-ch
		st.qmu.Lock()
	}
}

// drainQueue is the drainer's loop; the caller set st.draining. Each time
// it delivered what it took (or stops) it wakes the senders waiting in
// drainBehind.
func (e *Engine) drainQueue(st *stripe) {
	st.qmu.Lock()
	for {
		st.delivering = 0
		wake := st.drained
		st.drained = nil
		n := 0
		for n < len(st.queue) && (st.queue[n].gate == nil || st.queue[n].gate.state != gatePending) {
			n++
		}
		if n == 0 {
			st.draining = false
			st.qmu.Unlock()
			if wake != nil {
				close(wake)
			}
			return
		}
		batch := st.queue[:n:n]
		st.queue = append([]push(nil), st.queue[n:]...)
		st.delivering = n
		st.qmu.Unlock()
		if wake != nil {
			close(wake)
		}
		for _, p := range batch {
			if len(p.to) == 0 || (p.gate != nil && p.gate.state == gateCancelled) {
				continue
			}
			e.d.Deliver(p.app, p.to, p.except, p.cmd)
			e.metrics.pushes.Add(float64(len(p.to)))
		}
		st.qmu.Lock()
	}
}

// openGate releases (ok) or cancels a gated push and drains the queue.
func (e *Engine) openGate(st *stripe, g *gate, ok bool) {
	e.setGate(st, g, ok)
	e.drain(st)
}

// setGate releases (ok) or cancels a gated push; the caller drains.
func (e *Engine) setGate(st *stripe, g *gate, ok bool) {
	st.qmu.Lock()
	g.state = gateOpen
	if !ok {
		g.state = gateCancelled
	}
	st.qmu.Unlock()
}

// drainFor drains the queue after queueing a push to n recipients: on the
// caller's goroutine for up to maxInlineFanout of them (a 1:1 or small
// group message costs less than a hand-off), else behind (drainBehind), so
// the sender's answer does not wait for a chat room's fan-out.
func (e *Engine) drainFor(st *stripe, n int) {
	if n > maxInlineFanout {
		e.drainBehind(st)
		return
	}
	e.drain(st)
}

// unlockAndDrain releases st.mu, delivers queued pushes and applies the
// outbox entries the commands under st.mu wrote (outbox.go).
func (e *Engine) unlockAndDrain(st *stripe) {
	refs := st.outbox
	st.outbox = nil
	st.mu.Unlock()
	e.drain(st)
	e.flushOutbox(refs)
}

// ForgetTimestamps makes the cached last timestamps of conversations
// suspect: the next send of each conversation reads the newest stored
// message again and continues after the later of the two. The cluster calls
// it when shard coordination moves (another node may have assigned later
// timestamps meanwhile; they must stay strictly increasing per conversation
// across coordinator changes). It takes no stripe lock, so it is safe to call
// from code running under one.
func (e *Engine) ForgetTimestamps() {
	e.tsEpoch.Add(1)
	e.rooms.forget()
}
