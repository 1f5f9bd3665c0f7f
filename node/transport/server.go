package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// acceptLoop accepts peer connections until the listener closes.
func (t *Transport) acceptLoop(ctx context.Context, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				t.log.Error("Accepting peer connections stopped", keyErr, err)
			}
			return
		}
		t.goFunc(func() { t.serveInbound(ctx, c) })
	}
}

// serveInbound runs one accepted connection: handshake, then the reader on
// this goroutine, a writer for responses, and handler goroutines.
func (t *Transport) serveInbound(ctx context.Context, c net.Conn) {
	certID := ""
	if t.cfg.TLS != nil {
		tc := tls.Server(c, t.cfg.TLS.ServerConfig())
		c = tc
		var ok bool
		if certID, ok = t.tlsHandshake(ctx, tc); !ok {
			_ = c.Close()
			return
		}
	}
	w := newWconn(c, "")
	defer w.close()
	stop := context.AfterFunc(ctx, w.close)
	defer stop()
	r := bufio.NewReaderSize(c, readBufSize)
	if !t.handshake(w, r, certID) {
		return
	}
	// Responses: a request is handled by one of at most MaxInflight workers
	// and its response queued before the worker takes the next, so out never
	// holds more than MaxInflight frames and a handler's send can only wait
	// for the writer, not overflow.
	out := make(chan outFrame, t.cfg.MaxInflight)
	writerDone := make(chan struct{})
	t.goFunc(func() {
		defer close(writerDone)
		t.writeLoop(ctx, w, out, 0)
	})
	err := t.readInbound(ctx, w, r, &workers{out: out, slots: make(chan struct{}, t.cfg.MaxInflight), work: make(chan *frame)})
	if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
		t.logBadFrame(w, err)
	} else {
		t.logConnError(w, "read", err)
	}
	w.close()
	<-writerDone
}

// tlsHandshake runs the server side of the TLS handshake within
// DialTimeout and returns the node id the client's certificate names.
func (t *Transport) tlsHandshake(ctx context.Context, tc *tls.Conn) (string, bool) {
	hctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		t.stats.tlsRejects.Add(1)
		t.logRejected(tc.RemoteAddr(), "", err)
		return "", false
	}
	return peerCertID(tc), true
}

// peerCertID returns the Subject CommonName of the peer's verified
// certificate: its node id.
func peerCertID(tc *tls.Conn) string {
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// handshake reads Hello and answers HelloAck; false closes the connection.
// With TLS, certID is the id the client's certificate names, and the id the
// Hello claims must be the same.
func (t *Transport) handshake(w *wconn, r *bufio.Reader, certID string) bool {
	_ = w.c.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	f, err := readFrame(r, frameHelloMax)
	if err == nil && f.typ != frameHello {
		err = fmt.Errorf("%w: expected hello, got type %d", ErrBadFrame, f.typ)
	}
	if err != nil {
		if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
			t.logBadFrame(w, err)
		}
		return false
	}
	w.peer = f.nodeID
	ack := frame{typ: frameHelloAck, status: statusOK, nodeID: t.cfg.NodeID}
	switch {
	case f.version != protocolVersion:
		ack.status, ack.payload = statusRejected, fmt.Appendf(nil, "protocol version %d, want %d", f.version, protocolVersion)
	case f.nodeID == "":
		ack.status, ack.payload = statusRejected, []byte("empty node id")
	case t.cfg.TLS != nil && f.nodeID != certID:
		t.stats.tlsRejects.Add(1)
		t.logRejected(w.c.RemoteAddr(), f.nodeID, fmt.Errorf("claims node id %q, its certificate names %q", f.nodeID, certID))
		ack.status, ack.payload = statusRejected, fmt.Appendf(nil, "node id %q does not match the certificate's %q", f.nodeID, certID)
	case t.cfg.Faults.isPartitioned(f.nodeID):
		ack.status, ack.payload = statusRejected, []byte("partitioned (fault injection)")
	}
	if _, err := w.c.Write(appendFrame(nil, &ack)); err != nil || ack.status != statusOK {
		return false
	}
	return w.c.SetDeadline(time.Time{}) == nil
}

// Kinds of inbound frames a refusal counts (imnode_transport_peer_refusals_total).
const (
	kindRequest = "request" // answered with a retryable error
	kindMessage = "message" // dropped
)

// refusalLogInterval is how often at most one peer's refusals are logged;
// the counter counts each.
const refusalLogInterval = 30 * time.Second

// maxRefusalLogPeers bounds the peers whose last refusal log time is
// kept; beyond it the table is cleared (a few lines more in the log,
// never unbounded memory).
const maxRefusalLogPeers = 1024

// RefusalReason is implemented by errors of Config.Authorize that name why
// a peer is refused (e.g. "unknown", "left"); the reason labels the
// refusals counter, so the set must be small. Other errors count as
// "refused".
type RefusalReason interface {
	RefusalReason() string
}

// authorize asks Config.Authorize about peer; refusals are counted by kind
// and reason, and logged at most once per peer per refusalLogInterval.
func (t *Transport) authorize(peer, kind string) error {
	if t.cfg.Authorize == nil {
		return nil
	}
	err := t.cfg.Authorize(peer)
	if err != nil {
		t.stats.unauthorized.Add(1)
		reason := "refused"
		var r RefusalReason
		if errors.As(err, &r) {
			reason = r.RefusalReason()
		}
		t.refusals.WithLabelValues(kind, reason).Inc()
		t.logRefusal(peer, kind, err)
	}
	return err
}

// logRefusal logs a refused peer, at most once per refusalLogInterval per
// peer.
func (t *Transport) logRefusal(peer, kind string, err error) {
	now := time.Now()
	t.refusalLog.Lock()
	last, ok := t.refusalLog.last[peer]
	if ok && now.Sub(last) < refusalLogInterval {
		t.refusalLog.Unlock()
		return
	}
	if len(t.refusalLog.last) >= maxRefusalLogPeers {
		clear(t.refusalLog.last)
	}
	t.refusalLog.last[peer] = now
	t.refusalLog.Unlock()
	t.log.Warn("Refusing peer requests and messages", keyPeer, peer, "kind", kind, keyErr, err,
		"unauthorizedTotal", t.stats.unauthorized.Load())
}

// frameHelloMax bounds a handshake frame: header plus a 255-byte id plus a
// short reason.
const frameHelloMax = 512

// workers run one inbound connection's requests: goroutines started on
// demand, at most cap(slots) (MaxInflight) at once, each serving requests
// handed to it through work until the connection closes or it has been idle
// for workerIdle. A worker keeps its grown stack from one request to the
// next: a goroutine per request paid for growing its stack on most
// requests (a replicated write's handler reads Pebble, deep stacks),
// several percent of a replica's CPU.
type workers struct {
	out   chan<- outFrame
	slots chan struct{} // one per running worker
	work  chan *frame   // unbuffered: taken only by an idle worker
}

// workerIdle is how long a connection's worker waits for a request before
// it exits.
const workerIdle = 10 * time.Second

// dispatch hands request f to an idle worker, starts one if fewer than
// MaxInflight run, or else waits until one is idle (backpressure: the
// reader stops reading). False if the connection closed meanwhile.
func (t *Transport) dispatch(ctx context.Context, w *wconn, ws *workers, f *frame) bool {
	select {
	case ws.work <- f:
		return true
	default:
	}
	select {
	case ws.work <- f:
	case ws.slots <- struct{}{}:
		t.goFunc(func() {
			defer func() { <-ws.slots }()
			t.worker(ctx, w, ws, f)
		})
	case <-w.closed:
		return false
	}
	return true
}

// worker handles f, then the requests dispatch hands it, until the
// connection closes or none came for workerIdle.
func (t *Transport) worker(ctx context.Context, w *wconn, ws *workers, f *frame) {
	t.handleRequest(ctx, w, ws.out, f)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case f := <-ws.work:
			t.handleRequest(ctx, w, ws.out, f)
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.closed:
			return
		}
	}
}

// readInbound reads requests and messages until the connection fails.
func (t *Transport) readInbound(ctx context.Context, w *wconn, r *bufio.Reader, ws *workers) error {
	// A live dialer sends at least a ping every IdleTimeout/3. The
	// deadline is pushed out at most every IdleTimeout/4 (not per frame,
	// which costs a timer update per frame on a busy stream), so a silent
	// connection closes after 3/4 to 1 IdleTimeout.
	var deadlineSet time.Time
	for {
		if now := time.Now(); now.Sub(deadlineSet) > t.cfg.IdleTimeout/4 {
			if err := w.c.SetReadDeadline(now.Add(t.cfg.IdleTimeout)); err != nil {
				return err
			}
			deadlineSet = now
		}
		f, err := readFrame(r, t.cfg.MaxFrameSize)
		if err != nil {
			return err
		}
		if t.cfg.Faults.isPartitioned(w.peer) {
			continue
		}
		switch f.typ {
		case framePing:
		case frameMessage:
			if t.authorize(w.peer, kindMessage) != nil {
				continue
			}
			if t.cfg.Handler != nil {
				t.cfg.Handler.HandleMessage(&Message{From: w.peer, Method: f.method, Epoch: f.epoch, Payload: f.payload})
			}
		case frameRequest:
			if !t.dispatch(ctx, w, ws, f) {
				return ErrConnectionLost
			}
		default:
			return fmt.Errorf("%w: type %d on an accepted connection", ErrBadFrame, f.typ)
		}
	}
}

// handleRequest runs the handler for one request and queues the response.
func (t *Transport) handleRequest(ctx context.Context, w *wconn, out chan<- outFrame, f *frame) {
	resp := frame{typ: frameResponse, id: f.id, status: statusOK, epoch: t.cfg.Epoch()}
	authErr := t.authorize(w.peer, kindRequest)
	switch {
	case authErr != nil:
		resp.status, resp.payload = statusRetry, []byte(authErr.Error())
	case f.epoch != 0 && resp.epoch != 0 && f.epoch != resp.epoch &&
		(t.cfg.SkipEpochCheck == nil || !t.cfg.SkipEpochCheck(f.method)):
		t.stats.epochRejects.Add(1)
		resp.status = statusEpochMismatch
	case t.cfg.Handler == nil:
		resp.status, resp.payload = statusError, []byte(errNoHandler.Error())
	default:
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if f.timeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, time.Duration(f.timeout)*time.Millisecond)
		}
		payload, err := t.cfg.Handler.HandleRequest(hctx, &Request{From: w.peer, Method: f.method, Epoch: f.epoch, Payload: f.payload})
		expired := hctx.Err() != nil && ctx.Err() == nil
		cancel()
		if expired {
			return // the caller's deadline passed: it no longer waits for an answer
		}
		resp.payload = payload
		if err != nil {
			resp.status, resp.payload = statusError, []byte(err.Error())
			if IsRetryable(err) {
				resp.status = statusRetry
			}
		}
		if ctx.Err() != nil {
			resp.status, resp.payload = statusShutdown, nil
		}
	}
	if len(resp.payload)+responseHeader > t.cfg.MaxFrameSize {
		resp.status, resp.payload = statusError, fmt.Appendf(nil, "response of %d bytes exceeds the frame limit", len(resp.payload))
	}
	select {
	case out <- outFrame{b: appendFrame(nil, &resp)}:
	case <-w.closed:
	}
}
