package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/limit"
)

// Log key and component names.
const (
	logComponent = "transport"
	keyPeer      = "peer"
	keyErr       = "err"
	keyAddr      = "addr"
)

// badFrameLogInterval rate-limits warnings about garbage from peers: one
// line per interval per transport, with the count suppressed meanwhile, so a
// misbehaving peer cannot flood the log.
const badFrameLogInterval = 10 * time.Second

var errNoHandler = errors.New("transport: no handler")

// Transport is a node's peer transport. All methods are safe for concurrent
// use. Create it with New, then Start, and Shutdown when done.
type Transport struct {
	cfg Config
	log *slog.Logger
	// cancel stops the accept loop and inbound connections (set by Start);
	// peers have their own, cancelled by Shutdown.
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// down is set by Shutdown before anything is cancelled.
	down  atomic.Bool
	ln    net.Listener
	stats counters

	// badLog and rejectLog pace the bad-frame and refused-handshake
	// warnings.
	badLog, rejectLog limit.Interval
	// refusals counts inbound requests and messages Config.Authorize
	// refused, by kind and reason.
	refusals *prometheus.CounterVec

	// refusalLog is when each refused peer was last logged (logRefusal),
	// at most maxRefusalLogPeers entries.
	refusalLog struct {
		sync.Mutex
		last map[string]time.Time
	}

	mu struct {
		sync.Mutex
		peers    map[string]*peer
		shutdown bool
	}
}

// counters are cumulative event counts, exposed by Stats.
type counters struct {
	dials, dialErrors, queueFull, badFrames, expired, epochRejects atomic.Uint64
	tlsRejects, unauthorized                                       atomic.Uint64
	framesWritten, flushes                                         atomic.Uint64
	messagesHeld                                                   atomic.Uint64
	// dropped counts messages Send accepted that were never written, by
	// reason (dropUnreachable, dropOverflow, dropClosed).
	dropped struct{ unreachable, overflow, closed atomic.Uint64 }
}

// Stats is a snapshot of a Transport's cumulative counters.
type Stats struct {
	Dials        uint64 // successful dials plus handshakes
	DialErrors   uint64 // failed dials or handshakes
	QueueFull    uint64 // calls and sends refused with ErrQueueFull
	BadFrames    uint64 // connections closed for a malformed frame
	Expired      uint64 // queued frames dropped because their deadline passed
	EpochRejects uint64 // inbound requests answered with an epoch mismatch
	TLSRejects   uint64 // inbound connections refused: TLS handshake failed or claimed id is not the certificate's
	Unauthorized uint64 // inbound requests and messages refused by Config.Authorize
	// FramesWritten and Flushes count the frames written to connections
	// and the writes (system calls, but for a partial write) that carried
	// them: their ratio is the writers' batching.
	FramesWritten, Flushes uint64
	// MessagesHeld counts one-way messages kept across a failed dial or a
	// lost connection for the next connection (Config.MessageHold).
	MessagesHeld uint64
	// MessagesDropped counts one-way messages Send accepted and that were
	// never written: held past Config.MessageHold (the peer stayed
	// unreachable), beyond the held bound, or still queued when the peer
	// was closed or the transport shut down. Messages lost with a
	// connection after they were written are not known, so not counted.
	MessagesDropped uint64
}

// New validates cfg and returns a Transport that is not yet listening.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &Transport{cfg: cfg, log: cfg.Logger.With("component", logComponent), cancel: func() {}}
	t.mu.peers = map[string]*peer{}
	t.refusalLog.last = map[string]time.Time{}
	if err := t.registerMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("transport: metrics: %w", err)
	}
	return t, nil
}

// registerMetrics creates the transport's metrics and registers them on
// reg, if not nil.
func (t *Transport) registerMetrics(reg prometheus.Registerer) error {
	t.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imnode_transport_peer_refusals_total",
		Help: "Inbound peer requests and messages refused by the membership check, by kind and reason."},
		[]string{"kind", "reason"})
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{t.refusals,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_transport_messages_held_total",
			Help: "One-way peer messages kept across a failed dial or lost connection for the next connection."},
			func() float64 { return float64(t.stats.messagesHeld.Load()) }),
	}
	for reason, c := range map[string]*atomic.Uint64{dropUnreachable: &t.stats.dropped.unreachable,
		dropOverflow: &t.stats.dropped.overflow, dropClosed: &t.stats.dropped.closed} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_transport_messages_dropped_total",
			Help:        "One-way peer messages accepted by Send and never written, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(c.Load()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// dropMessages counts n messages accepted by Send and never written.
func (t *Transport) dropMessages(n int, reason string) {
	if n == 0 {
		return
	}
	switch reason {
	case dropUnreachable:
		t.stats.dropped.unreachable.Add(uint64(n))
	case dropOverflow:
		t.stats.dropped.overflow.Add(uint64(n))
	default:
		t.stats.dropped.closed.Add(uint64(n))
	}
}

// Start listens on Config.ListenAddr (if set) and starts accepting peers.
func (t *Transport) Start() error {
	if t.cfg.ListenAddr == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.cfg.ListenAddr)
	if err != nil {
		cancel()
		return fmt.Errorf("transport: listen %s: %w", t.cfg.ListenAddr, err)
	}
	t.ln, t.cancel = ln, cancel
	t.goFunc(func() { t.acceptLoop(ctx, ln) })
	return nil
}

// Addr returns the listening address, or nil before Start or without
// ListenAddr.
func (t *Transport) Addr() net.Addr {
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Shutdown stops accepting, closes every connection, fails pending calls
// with ErrShutdown and waits for every goroutine. It is idempotent.
func (t *Transport) Shutdown() {
	t.down.Store(true)
	t.mu.Lock()
	t.mu.shutdown = true
	peers := t.mu.peers
	t.mu.peers = map[string]*peer{}
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.cancel()
	if t.ln != nil {
		_ = t.ln.Close()
	}
	t.wg.Wait()
}

// Stats returns the current counters.
func (t *Transport) Stats() Stats {
	return Stats{
		Dials: t.stats.dials.Load(), DialErrors: t.stats.dialErrors.Load(),
		QueueFull: t.stats.queueFull.Load(), BadFrames: t.stats.badFrames.Load(),
		Expired: t.stats.expired.Load(), EpochRejects: t.stats.epochRejects.Load(),
		TLSRejects: t.stats.tlsRejects.Load(), Unauthorized: t.stats.unauthorized.Load(),
		FramesWritten: t.stats.framesWritten.Load(), Flushes: t.stats.flushes.Load(),
		MessagesHeld: t.stats.messagesHeld.Load(),
		MessagesDropped: t.stats.dropped.unreachable.Load() + t.stats.dropped.overflow.Load() +
			t.stats.dropped.closed.Load(),
	}
}

// goFunc runs f on a goroutine owned by t (Shutdown waits for it).
func (t *Transport) goFunc(f func()) {
	t.wg.Go(f)
}

// Call sends a request to node to and waits for its response. The deadline
// is ctx's, or Config.RequestTimeout if ctx has none; it travels with the
// request so the handler gives up too. payload is not retained after Call
// returns; the returned payload is owned by the caller.
//
// Errors: ErrQueueFull, ErrUnavailable, ErrConnectionLost, ErrTimeout,
// ErrShutdown, *EpochMismatchError, *RemoteError, ErrFrameTooLarge, or
// ctx.Err() when ctx was cancelled. IsRetryable tells which to retry.
func (t *Transport) Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.RequestTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	p, err := t.peer(to)
	if err != nil {
		return nil, err
	}
	if err := t.checkSize(len(payload), requestHeader); err != nil {
		return nil, err
	}
	w := &waiter{ch: make(chan result, 1)}
	id, err := t.send(p, w, method, payload, deadline)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-w.ch:
		return r.payload, decorate(r.err, w.epoch)
	case <-ctx.Done():
		p.take(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s method %d", ErrTimeout, to, method)
		}
		return nil, ctx.Err()
	}
}

// CallFunc is Call without a waiting goroutine: it sends the request and
// returns at once, and done runs exactly once with the response or the
// error (those of Call; ErrTimeout once timeout passed). done runs on the
// goroutine that learns the outcome: the connection's reader, the
// deadline's timer (time.AfterFunc), the peer's goroutine when the
// connection fails, or the caller's before CallFunc returns when the
// request could not be sent; so it must not block, and it must not wait
// for another call. A fan-out to several peers that waits for some of the
// answers (the replicas' Prepare) costs the caller no goroutine per peer
// and the reply one wake-up less: the reader hands it over directly.
func (t *Transport) CallFunc(to string, method uint16, payload []byte, timeout time.Duration, done func([]byte, error)) {
	if timeout <= 0 {
		timeout = t.cfg.RequestTimeout
	}
	p, err := t.peer(to)
	if err == nil {
		err = t.checkSize(len(payload), requestHeader)
	}
	if err != nil {
		done(nil, err)
		return
	}
	w := &waiter{done: done}
	id, err := t.send(p, w, method, payload, time.Now().Add(timeout))
	if err != nil {
		w.complete(result{err: err})
		return
	}
	timer := time.AfterFunc(timeout, func() {
		if w := p.take(id); w != nil {
			w.complete(result{err: fmt.Errorf("%w: %s method %d", ErrTimeout, to, method)})
		}
	})
	// The timer is the waiter's only while the call is pending (both under
	// peer.mu): whoever took it out of the table first stops no timer, and
	// it is stopped here.
	p.mu.Lock()
	if p.pending[id] == w {
		w.timer, timer = timer, nil
	}
	p.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
}

// send registers call w with p, encodes the request and queues it; on an
// error nothing is pending.
func (t *Transport) send(p *peer, w *waiter, method uint16, payload []byte, deadline time.Time) (uint64, error) {
	timeout := max(time.Until(deadline).Milliseconds(), 1)
	w.epoch = t.cfg.Epoch()
	id, err := p.register(w)
	if err != nil {
		return 0, err
	}
	f := frame{typ: frameRequest, id: id, epoch: w.epoch, timeout: uint32(min(timeout, 1<<31)), method: method, payload: payload}
	if err := p.enqueue(outFrame{b: appendFrame(nil, &f), deadline: deadline}); err != nil {
		if p.take(id) == nil {
			// failAll completed the call meanwhile: its outcome stands, so
			// that the call completes once.
			return id, nil
		}
		return 0, err
	}
	return id, nil
}

// decorate fills the epoch the request carried into a mismatch error.
func decorate(err error, sent uint64) error {
	if em, ok := errors.AsType[*EpochMismatchError](err); ok {
		em.Sent = sent
	}
	return err
}

// Send queues a one-way message to node to and returns without waiting.
// Messages to one peer arrive in the order they were sent, and payload is
// not retained.
//
// Delivery is best effort, and every loss that the transport can know of
// is counted (Stats.MessagesDropped): a message queued while the peer is
// being dialed, or not yet written when a connection breaks, is kept
// (Config.MessageHold) and written first on the next connection; it is
// dropped only if no connection succeeds within MessageHold, or if the
// peer is closed or the transport shuts down first. While the peer is in
// reconnect backoff, Send fails at once with ErrUnavailable. A message
// already written to a connection that then breaks may be lost without a
// count: the peer may or may not have read it.
//
// Errors: ErrQueueFull, ErrUnavailable, ErrShutdown, ErrFrameTooLarge.
func (t *Transport) Send(to string, method uint16, payload []byte) error {
	p, err := t.peer(to)
	if err != nil {
		return err
	}
	if err := t.checkSize(len(payload), messageHeader); err != nil {
		return err
	}
	f := frame{typ: frameMessage, epoch: t.cfg.Epoch(), method: method, payload: payload}
	return p.enqueue(outFrame{b: appendFrame(nil, &f)})
}

// ClosePeer closes the connection to node id and forgets it (a node that
// left the cluster). Calls pending to it fail with ErrConnectionLost. A
// later Call or Send dials again.
func (t *Transport) ClosePeer(id string) {
	t.mu.Lock()
	p := t.mu.peers[id]
	delete(t.mu.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

func (t *Transport) checkSize(payload, header int) error {
	if payload+header > t.cfg.MaxFrameSize {
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrFrameTooLarge, payload, t.cfg.MaxFrameSize-header)
	}
	return nil
}

// peer returns the outbound peer for id, creating it and its goroutine.
func (t *Transport) peer(id string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.shutdown {
		return nil, ErrShutdown
	}
	if p, ok := t.mu.peers[id]; ok {
		return p, nil
	}
	if t.cfg.Resolve == nil {
		return nil, fmt.Errorf("%w: no resolver", ErrUnavailable)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := newPeer(t, id, cancel)
	t.mu.peers[id] = p
	t.goFunc(func() { p.run(ctx) })
	return p, nil
}

// logConnError logs the end of a connection at debug level unless it is
// the transport shutting down.
func (t *Transport) logConnError(w *wconn, during string, err error) {
	if t.down.Load() {
		return
	}
	select {
	case <-w.closed:
		return
	default:
	}
	t.log.Debug("Closing peer connection", "during", during, keyPeer, w.peer, keyErr, err)
}

// logBadFrame counts and, at most once per badFrameLogInterval, logs a
// connection closed for garbage.
func (t *Transport) logBadFrame(w *wconn, err error) {
	n := t.stats.badFrames.Add(1)
	if !t.badLog.Allow(time.Now(), badFrameLogInterval) {
		return
	}
	t.log.Warn("Closing peer connection after malformed frame", keyPeer, w.peer,
		keyAddr, w.c.RemoteAddr().String(), keyErr, err, "badFramesTotal", n)
}

// logRejected counts nothing (the caller does) and, at most once per
// badFrameLogInterval, logs a connection refused at the handshake: someone
// without valid credentials, or a node claiming another's id.
func (t *Transport) logRejected(addr net.Addr, claimed string, err error) {
	if t.down.Load() {
		return
	}
	if !t.rejectLog.Allow(time.Now(), badFrameLogInterval) {
		return
	}
	t.log.Warn("Refusing peer connection", keyAddr, addr.String(), "claimed", claimed, keyErr, err,
		"tlsRejectsTotal", t.stats.tlsRejects.Load())
}
