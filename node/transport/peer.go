package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Peer connection states.
const (
	stateConnecting int32 = iota // dialing; calls queue (bounded) and wait
	stateConnected               // frames flow
	stateBackoff                 // last dial failed; calls fail fast
)

// result is the outcome of one call.
type result struct {
	payload []byte
	err     error
}

// waiter is a pending call: Call's waits on ch, CallFunc's has done run
// (and its timer stopped) by whoever completes it first, the reader, the
// timer or failAll: each takes it out of the table under peer.mu, so it
// completes once.
type waiter struct {
	ch    chan result // Call's; capacity 1
	done  func([]byte, error)
	timer *time.Timer // CallFunc's deadline
	epoch uint64      // the epoch the request carried
}

// complete hands r to the waiter's caller.
func (w *waiter) complete(r result) {
	if w.done == nil {
		w.ch <- r
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.done(r.payload, decorate(r.err, w.epoch))
}

// peer is the outbound side towards one node: a send queue that survives
// reconnects, the pending-call table, and one goroutine (run) that dials,
// writes and redials, plus a reader per connection. The table is guarded by
// mu; state and ids are atomics.
type peer struct {
	t       *Transport
	id      string
	cancel  context.CancelFunc // stops run
	stopped atomic.Bool        // set by stop; calls then fail with ErrShutdown
	queue   chan outFrame      // bounded by Config.SendQueueLen; full -> ErrQueueFull; messages survive failed dials (run, hold)
	nextID  atomic.Uint64
	state   atomic.Int32
	// lastErr is the error that put the peer into backoff.
	lastErr atomic.Pointer[error]

	mu      sync.Mutex
	pending map[uint64]*waiter
}

func newPeer(t *Transport, id string, cancel context.CancelFunc) *peer {
	return &peer{t: t, id: id, cancel: cancel, queue: make(chan outFrame, t.cfg.SendQueueLen), pending: map[uint64]*waiter{}}
}

// stop ends the peer's goroutines; run fails what is pending on exit.
func (p *peer) stop() {
	p.stopped.Store(true)
	p.cancel()
}

// register adds pending call w and returns its id.
func (p *peer) register(w *waiter) (uint64, error) {
	if p.stopped.Load() {
		return 0, ErrShutdown
	}
	if err := p.unavailable(); err != nil {
		return 0, err
	}
	id := p.nextID.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) >= p.t.cfg.MaxPending {
		p.t.stats.queueFull.Add(1)
		return 0, fmt.Errorf("%w: %d calls pending to %s", ErrQueueFull, len(p.pending), p.id)
	}
	p.pending[id] = w
	return id, nil
}

// take removes call id from the table and returns it; nil if it is no
// longer pending (completed, expired or failed).
func (p *peer) take(id uint64) *waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.pending[id]
	delete(p.pending, id)
	return w
}

// resolve completes call id, if still pending.
func (p *peer) resolve(id uint64, r result) {
	if w := p.take(id); w != nil {
		w.complete(r)
	}
}

// failAll completes every pending call with err.
func (p *peer) failAll(err error) {
	p.mu.Lock()
	pending := p.pending
	p.pending = map[uint64]*waiter{}
	p.mu.Unlock()
	for _, w := range pending {
		w.complete(result{err: err})
	}
}

func (p *peer) unavailable() error {
	if p.state.Load() != stateBackoff {
		return nil
	}
	if e := p.lastErr.Load(); e != nil && errors.Is(*e, ErrUnavailable) {
		return fmt.Errorf("%s: %w", p.id, *e)
	}
	if e := p.lastErr.Load(); e != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, p.id, *e)
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, p.id)
}

// enqueue adds an encoded frame to the send queue without blocking.
func (p *peer) enqueue(f outFrame) error {
	if p.stopped.Load() {
		return ErrShutdown
	}
	if err := p.unavailable(); err != nil {
		return err
	}
	select {
	case p.queue <- f:
		return nil
	default:
		p.t.stats.queueFull.Add(1)
		return fmt.Errorf("%w: %d frames queued to %s", ErrQueueFull, cap(p.queue), p.id)
	}
}

// Reasons a one-way message accepted by Send was never written
// (Stats.MessagesDropped, imnode_transport_messages_dropped_total).
const (
	dropUnreachable = "unreachable" // no connection within Config.MessageHold
	dropOverflow    = "overflow"    // more than SendQueueLen held at once
	dropClosed      = "closed"      // the peer was closed or the transport shut down
)

// isMessage reports whether encoded frame b is a one-way message.
func isMessage(b []byte) bool { return len(b) > lenPrefix && b[lenPrefix] == frameMessage }

// held are the one-way messages that run keeps for the next connection
// after a failed dial or a lost connection, oldest first; run owns it.
type held struct {
	frames []outFrame
	since  time.Time // when the oldest was held; zero when frames is empty
}

// hold moves the frames still queued to h after a failed dial or a lost
// connection: requests are dropped (failAll failed their callers, who may
// retry elsewhere: sending them later could execute a request twice),
// messages are kept, at most SendQueueLen of them, for the next
// connection. Messages held since more than MessageHold are dropped and
// counted: the peer stays unreachable, and Send refuses new ones with
// ErrUnavailable meanwhile.
func (p *peer) hold(h *held, now time.Time) {
	overflow := 0
	p.takeQueued(func(f outFrame) {
		switch {
		case !isMessage(f.b):
		case len(h.frames) < cap(p.queue):
			h.frames = append(h.frames, f)
		default:
			overflow++
		}
	})
	p.t.dropMessages(overflow, dropOverflow)
	switch {
	case len(h.frames) == 0:
		h.since = time.Time{}
	case h.since.IsZero():
		h.since = now
		p.t.stats.messagesHeld.Add(uint64(len(h.frames)))
	case now.Sub(h.since) > p.t.cfg.MessageHold:
		p.t.dropMessages(len(h.frames), dropUnreachable)
		p.t.log.Debug("Dropping messages to an unreachable peer", keyPeer, p.id, "messages", len(h.frames),
			"heldFor", now.Sub(h.since))
		*h = held{}
	}
}

// drainQueue drops every queued frame and every held message when the
// peer stops (the callers of requests were failed); messages are counted.
func (p *peer) drainQueue(h *held) {
	n := len(h.frames)
	*h = held{}
	p.takeQueued(func(f outFrame) {
		if isMessage(f.b) {
			n++
		}
	})
	p.t.dropMessages(n, dropClosed)
}

// takeQueued calls fn for every frame queued now, emptying the queue.
func (p *peer) takeQueued(fn func(outFrame)) {
	for {
		select {
		case f := <-p.queue:
			fn(f)
		default:
			return
		}
	}
}

// run is the peer's goroutine: connect, serve the connection until it
// breaks, back off, repeat, until the peer or transport stops. Messages
// queued when a dial fails or a connection breaks are held (see hold) and
// written first on the next connection, so a peer that is briefly
// unreachable, or not listening yet, loses none of what Send accepted.
func (p *peer) run(ctx context.Context) {
	var h held
	defer func() {
		p.failAll(ErrShutdown)
		p.drainQueue(&h)
	}()
	backoff := p.t.cfg.BackoffMin
	for ctx.Err() == nil {
		p.state.Store(stateConnecting)
		w, r, err := p.dial(ctx)
		if err == nil {
			p.t.stats.dials.Add(1)
			p.state.Store(stateConnected)
			since := time.Now()
			first := h.frames
			h = held{}
			err = p.serve(ctx, w, r, first)
			if time.Since(since) > p.t.cfg.BackoffMax {
				backoff = p.t.cfg.BackoffMin // it was healthy: redial soon
			}
			err = fmt.Errorf("%w: %w", ErrConnectionLost, err)
		} else {
			p.t.stats.dialErrors.Add(1)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if ctx.Err() != nil {
			return
		}
		p.t.log.Debug("Reconnecting to peer", keyPeer, p.id, keyErr, err, "backoff", backoff)
		p.lastErr.Store(&err)
		p.state.Store(stateBackoff)
		p.failAll(fmt.Errorf("%s: %w", p.id, err))
		p.hold(&h, time.Now())
		if !Sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, p.t.cfg.BackoffMax)
	}
}

// jitter spreads d by +-20% so peers that lost the same node do not redial
// in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(d*2/5+1) //nolint:gosec // jitter, not cryptography
}

// Sleep waits d, or less when ctx is done first; it reports whether the
// whole of d passed. It is the wait between attempts of every retry loop
// of the peer path (dialing here, the replica set's coordinator calls, the
// router's command forwarding, the cluster's drain).
func Sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// dial connects and performs the handshake.
func (p *peer) dial(ctx context.Context) (*wconn, *bufio.Reader, error) {
	if p.t.cfg.Faults.isPartitioned(p.id) {
		return nil, nil, errors.New("partitioned (fault injection)")
	}
	addr, err := p.t.cfg.Resolve(p.id)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, p.t.cfg.DialTimeout)
	defer cancel()
	c, err := p.t.cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if p.t.cfg.TLS != nil {
		tc := tls.Client(c, p.t.cfg.TLS.ClientConfig())
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = c.Close()
			return nil, nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		if id := peerCertID(tc); id != p.id {
			_ = c.Close()
			return nil, nil, fmt.Errorf("%w: %s presented a certificate for %q", ErrWrongPeer, addr, id)
		}
		c = tc
	}
	w := newWconn(c, p.id)
	stop := context.AfterFunc(dctx, w.close) // bounds the handshake
	defer stop()
	hello := frame{typ: frameHello, version: protocolVersion, nodeID: p.t.cfg.NodeID}
	if _, err := c.Write(appendFrame(nil, &hello)); err != nil {
		w.close()
		return nil, nil, fmt.Errorf("handshake: %w", err)
	}
	r := bufio.NewReaderSize(c, readBufSize)
	ack, err := readFrame(r, frameHelloMax)
	if err == nil && ack.typ != frameHelloAck {
		err = fmt.Errorf("%w: expected hello ack, got type %d", ErrBadFrame, ack.typ)
	}
	if err == nil && ack.status != statusOK {
		err = fmt.Errorf("handshake rejected: %s", ack.payload)
	}
	if err == nil && ack.nodeID != p.id {
		err = fmt.Errorf("%w: %s answered as %q", ErrWrongPeer, addr, ack.nodeID)
	}
	if err != nil || !stop() {
		w.close()
		return nil, nil, errors.Join(fmt.Errorf("handshake with %s", addr), err, dctx.Err())
	}
	return w, r, nil
}

// serve runs one connection: the reader on its own goroutine, the writer
// here, which writes first (the messages held from failed attempts) before
// the queue. It returns when the connection ends.
func (p *peer) serve(ctx context.Context, w *wconn, r *bufio.Reader, first []outFrame) error {
	var readErr error
	done := make(chan struct{})
	p.t.goFunc(func() {
		defer close(done)
		readErr = p.readLoop(w, r)
	})
	if p.t.writeFirst(ctx, w, first) {
		p.t.writeLoop(ctx, w, p.queue, p.t.cfg.IdleTimeout/3)
	}
	w.close()
	<-done
	if readErr == nil {
		readErr = errors.New("write failed")
	}
	return readErr
}

// readLoop reads responses until the connection fails.
func (p *peer) readLoop(w *wconn, r *bufio.Reader) error {
	defer w.close()
	for {
		f, err := readFrame(r, p.t.cfg.MaxFrameSize)
		if err == nil && f.typ != frameResponse {
			err = fmt.Errorf("%w: type %d on a dialed connection", ErrBadFrame, f.typ)
		}
		if err != nil {
			if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
				p.t.logBadFrame(w, err)
			}
			return err
		}
		if p.t.cfg.Faults.isPartitioned(p.id) {
			continue
		}
		p.resolve(f.id, p.response(f))
	}
}

// response turns a response frame into a call result.
func (p *peer) response(f *frame) result {
	switch f.status {
	case statusOK:
		return result{payload: f.payload}
	case statusEpochMismatch:
		return result{err: &EpochMismatchError{Peer: p.id, Remote: f.epoch}}
	case statusShutdown:
		return result{err: fmt.Errorf("%w: peer %s", ErrShutdown, p.id)}
	default:
		return result{err: &RemoteError{Peer: p.id, Message: string(f.payload), Temporary: f.status == statusRetry}}
	}
}
