package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Conn is one logical connection to the servers (the JS SDK's Realtime): a
// WebSocket that is re-established after drops, hosting any number of
// logged-in IMClients routed by peerId.
//
// Conn is safe for concurrent use. It owns three kinds of goroutines: the
// run loop (heartbeat, liveness, reconnect, re-login), the writer of
// fire-and-forget frames, and one gws read loop per socket. Close stops and
// waits for all of them.
type Conn struct {
	cfg    Config
	logger *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    atomic.Int32
	// fire carries encoded fire-and-forget frames (acks, read, echo) to the
	// writer goroutine; bounded by fireQueueSize, full means drop and count.
	fire        chan []byte
	droppedFire atomic.Uint64

	// mu guards the fields below. Lock order: Conn.mu before IMClient.mu;
	// never held across I/O or a channel send that can block.
	mu struct {
		sync.Mutex
		sock    *socket // current socket, nil while disconnected
		ready   bool    // sessions are (re)opened on sock
		urls    []string
		clients []*IMClient // login order; clients[0] is the default session
		pending map[int32]*call
		closed  bool
	}
}

// call is one request waiting for its response.
type call struct {
	sock *socket
	ch   chan *pb.GenericCommand // capacity 1; nil value means connection lost
	// hook runs on the read goroutine before the response is handed over,
	// so state (a new session) exists before the pushes that follow it.
	hook func(*pb.GenericCommand)
}

// Dial connects to the first reachable URL of cfg and returns the Conn. It
// fails if none can be reached (the JS SDK rejects the first connect too);
// after that, drops are repaired in the background.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Conn{cfg: cfg, logger: cfg.Logger.With("component", "imclient"), fire: make(chan []byte, fireQueueSize)}
	c.mu.urls = cfg.URLs
	c.mu.pending = make(map[int32]*call)
	s, err := c.dialAny(ctx)
	if err != nil {
		c.wg.Wait()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.mu.sock, c.mu.ready = s, true
	c.goFunc(func() { c.run(runCtx, s) })
	c.goFunc(func() { c.writeLoop(runCtx) })
	return c, nil
}

func (c *Conn) goFunc(f func()) { c.wg.Go(f) }

// Close logs nothing out (use IMClient.Close for that): it closes the socket
// with code 1000, stops every goroutine of the Conn, fails pending requests
// with ErrClosed and closes the event channels of its IMClients. Idempotent.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	clients := c.mu.clients
	c.mu.clients = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.failPending(nil)
	for _, cl := range clients {
		cl.shutdown()
	}
	return nil
}

// DroppedFrames returns how many fire-and-forget frames (receiver acks,
// read markers) were dropped because the write queue was full or the socket
// was down.
func (c *Conn) DroppedFrames() uint64 { return c.droppedFire.Load() }

// Connected reports whether the socket is up and all sessions are open.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.sock != nil && c.mu.ready && !c.mu.closed
}

// Subprotocol returns the negotiated subprotocol.
func (c *Conn) Subprotocol() string { return c.cfg.Subprotocol }

// URLs returns the current URL order (the next reconnect tries them in it).
func (c *Conn) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.mu.urls...)
}

// DropConnection closes the current socket abruptly, as a network failure
// would; the Conn then reconnects as usual. Meant for tests and tools.
func (c *Conn) DropConnection() {
	c.mu.Lock()
	s := c.mu.sock
	c.mu.Unlock()
	if s != nil {
		_ = s.ws.NetConn().Close()
	}
}

func (c *Conn) nextI() int32 {
	for {
		v := c.seq.Add(1)
		if v > 0 {
			return v
		}
		// Wrapped past MaxInt32: restart at 1 like the Swift SDK.
		c.seq.CompareAndSwap(v, 0)
	}
}

// readySocket returns the socket requests may use now.
func (c *Conn) readySocket() (*socket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.mu.closed:
		return nil, ErrClosed
	case c.mu.sock == nil || !c.mu.ready:
		return nil, ErrNotConnected
	}
	return c.mu.sock, nil
}

// request sends cmd on the current socket and waits for its response.
func (c *Conn) request(ctx context.Context, cmd *pb.GenericCommand, hook func(*pb.GenericCommand)) (*pb.GenericCommand, error) {
	s, err := c.readySocket()
	if err != nil {
		return nil, err
	}
	return c.roundTrip(ctx, s, cmd, hook)
}

// roundTrip sends cmd on s with a fresh i and waits for the frame carrying
// the same i, the context's end or the socket's end. An `error` response
// becomes an *Error.
func (c *Conn) roundTrip(ctx context.Context, s *socket, cmd *pb.GenericCommand, hook func(*pb.GenericCommand)) (*pb.GenericCommand, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	i := c.nextI()
	cmd.I = new(i)
	cl := &call{sock: s, ch: make(chan *pb.GenericCommand, 1), hook: hook}
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.mu.pending[i] = cl
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.mu.pending, i)
		c.mu.Unlock()
	}()
	if err := s.send(cmd); err != nil {
		return nil, err
	}
	select {
	case resp := <-cl.ch:
		if resp == nil {
			if c.isClosed() {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("%s request: %w", cmdName(cmd), ErrConnectionLost)
		}
		if resp.GetCmd() == pb.CommandType_error {
			return nil, errorFromProto(resp.GetErrorMessage())
		}
		return resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("client: %s request %d: %w", cmdName(cmd), i, ctx.Err())
	}
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// deliver hands a response to its waiting request, if any.
func (c *Conn) deliver(i int32, resp *pb.GenericCommand) {
	c.mu.Lock()
	cl := c.mu.pending[i]
	delete(c.mu.pending, i)
	c.mu.Unlock()
	if cl == nil {
		return // a late answer to a timed-out request, or an echo
	}
	if cl.hook != nil {
		cl.hook(resp)
	}
	cl.ch <- resp
}

// failPending wakes every request waiting on s (all requests if s is nil)
// with "connection lost".
func (c *Conn) failPending(s *socket) {
	c.mu.Lock()
	var woken []*call
	for i, cl := range c.mu.pending {
		if s == nil || cl.sock == s {
			woken = append(woken, cl)
			delete(c.mu.pending, i)
		}
	}
	c.mu.Unlock()
	for _, cl := range woken {
		cl.ch <- nil
	}
}

// fireAndForget queues a frame that expects no answer (ack, read). It never
// blocks: when the queue is full the frame is dropped and counted.
func (c *Conn) fireAndForget(cmd *pb.GenericCommand) {
	frame, _, err := protocol.Encode(cmd, c.cfg.Subprotocol)
	if err != nil {
		c.logger.Warn("Dropping unencodable frame", "err", err)
		return
	}
	select {
	case c.fire <- frame:
	default:
		c.droppedFire.Add(1)
	}
}

// writeLoop writes fire-and-forget frames to the current socket and
// flushes the sessions' batched receiver acks every AckInterval.
func (c *Conn) writeLoop(ctx context.Context) {
	acks := time.NewTicker(c.cfg.AckInterval)
	defer acks.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-acks.C:
			for _, cl := range c.clients() {
				cl.flushAcks()
			}
		case frame := <-c.fire:
			c.mu.Lock()
			s := c.mu.sock
			c.mu.Unlock()
			if s == nil {
				c.droppedFire.Add(1)
				continue
			}
			if err := s.write(frame); err != nil {
				c.droppedFire.Add(1)
			}
		}
	}
}

// route finds the session a push is for: by peerId, else the default one.
func (c *Conn) route(peerID *string) *IMClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mu.clients) == 0 {
		return nil
	}
	if peerID == nil {
		return c.mu.clients[0]
	}
	for _, cl := range c.mu.clients {
		if cl.id == *peerID {
			return cl
		}
	}
	return nil
}

// clientByID returns the session with the given id, if logged in here.
func (c *Conn) clientByID(id string) *IMClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.mu.clients {
		if cl.id == id {
			return cl
		}
	}
	return nil
}

func (c *Conn) addClient(cl *IMClient) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return false
	}
	for _, o := range c.mu.clients {
		if o.id == cl.id {
			return false
		}
	}
	c.mu.clients = append(c.mu.clients, cl)
	return true
}

func (c *Conn) removeClient(cl *IMClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.mu.clients {
		if o == cl {
			c.mu.clients = append(c.mu.clients[:i:i], c.mu.clients[i+1:]...)
			return
		}
	}
}

func (c *Conn) clients() []*IMClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*IMClient(nil), c.mu.clients...)
}

// broadcast emits a connection-level event to every session.
func (c *Conn) broadcast(ev Event) {
	for _, cl := range c.clients() {
		cl.emit(ev)
	}
}

// handleFrame runs on a socket's read goroutine. It never blocks.
func (c *Conn) handleFrame(s *socket, cmd *pb.GenericCommand) {
	if i := cmd.GetI(); i != 0 {
		c.deliver(i, cmd)
		return
	}
	switch cmd.GetCmd() {
	case pb.CommandType_goaway:
		c.logger.Info("Reconnecting after goaway")
		s.goaway.Store(true)
		s.close()
		return
	case pb.CommandType_error:
		c.logger.Warn("Ignoring unsolicited error frame", "code", cmd.GetErrorMessage().GetCode(), "reason", cmd.GetErrorMessage().GetReason())
		return
	default: // a push for a session
	}
	if cmd.Service != nil && cmd.GetService() != protocol.ServiceIM {
		return
	}
	cl := c.route(cmd.PeerId)
	if cl == nil {
		c.logger.Debug("Dropping push for unknown session", "peer", cmd.GetPeerId(), "cmd", cmdName(cmd))
		return
	}
	cl.handlePush(cmd)
}

// run supervises the socket: heartbeat and liveness while it is up,
// backoff, reconnect and re-login when it drops, until ctx ends.
func (c *Conn) run(ctx context.Context, s *socket) {
	for {
		c.serve(ctx, s)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if c.mu.sock == s {
			c.mu.sock, c.mu.ready = nil, false
		}
		c.mu.Unlock()
		c.failPending(s)
		code := s.closeCode()
		if fatalCloseCode(code) {
			c.logger.Warn("Server closed the connection with a fatal code", "code", code)
			c.terminateAll(&Error{Code: int32(code), Reason: s.closeReason(), Detail: "fatal close code"})
			return
		}
		if c.cfg.NoReconnect {
			c.terminateAll(&Error{Code: int32(code), Reason: s.closeReason(), Detail: "connection lost, reconnect disabled"})
			return
		}
		if s.goaway.Load() {
			c.forgetRoutedURLs()
		}
		c.broadcast(DisconnectEvent{Code: code, Goaway: s.goaway.Load()})
		if s = c.reconnect(ctx); s == nil {
			return
		}
		c.relogin(ctx, s)
	}
}

// terminateAll ends every session after an unrecoverable connection loss.
func (c *Conn) terminateAll(err *Error) {
	for _, cl := range c.clients() {
		cl.terminate(CloseEvent{Code: err.Code, Reason: err.Reason, Detail: err.Detail})
	}
}

// fatalCloseCode reports the close codes the JS SDK never retries.
func fatalCloseCode(code uint16) bool {
	return code == 4100 || code == 4103 || code == 4110
}

// serve runs heartbeat and liveness checks until s ends or ctx is done.
func (c *Conn) serve(ctx context.Context, s *socket) {
	hb := time.NewTicker(c.cfg.HeartbeatInterval)
	defer hb.Stop()
	live := time.NewTimer(c.cfg.LivenessTimeout)
	defer live.Stop()
	for {
		select {
		case <-ctx.Done():
			s.close()
			<-s.done
			return
		case <-s.done:
			return
		case <-hb.C:
			// Echo carries an i like the JS SDK's; nobody waits for the
			// answer, it only feeds the liveness timer.
			c.fireAndForget(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: new(c.nextI())})
		case <-live.C:
			idle := time.Since(time.Unix(0, s.lastRecv.Load()))
			if idle >= c.cfg.LivenessTimeout {
				c.logger.Warn("Closing silent connection", "idle", idle)
				s.close()
				continue
			}
			live.Reset(c.cfg.LivenessTimeout - idle)
		}
	}
}

// reconnect dials with backoff until a socket opens or ctx ends (nil).
func (c *Conn) reconnect(ctx context.Context) *socket {
	for attempt := 0; ; attempt++ {
		d := backoff(attempt, c.cfg.ReconnectBaseDelay, c.cfg.ReconnectMaxDelay)
		c.broadcast(ScheduleEvent{Attempt: attempt, Delay: d})
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		c.broadcast(RetryEvent{Attempt: attempt})
		s, err := c.dialAny(ctx)
		if err == nil {
			return s
		}
		c.logger.Info("Reconnect attempt failed", "attempt", attempt, "err", err)
		c.forgetRoutedURLs()
	}
}

// relogin reopens every session on the new socket (r=true, session token),
// then marks the Conn ready and emits ReconnectEvent.
func (c *Conn) relogin(ctx context.Context, s *socket) {
	c.mu.Lock()
	c.mu.sock, c.mu.ready = s, false
	c.mu.Unlock()
	for _, cl := range c.clients() {
		err := cl.reopen(ctx, s)
		if err == nil {
			if err := cl.syncNotifications(ctx); err != nil {
				c.logger.Info("Fetching missed notifications failed", "peer", cl.id, "err", err)
			}
			continue
		}
		if se, ok := errors.AsType[*Error](err); ok {
			cl.terminate(CloseEvent{Code: se.Code, Reason: se.Reason, Detail: se.Detail})
			continue
		}
		// A transport failure (timeout, socket lost): give this socket up
		// and let run start over with the backoff.
		c.logger.Info("Re-login failed", "peer", cl.id, "err", err)
		cl.emit(ReconnectErrorEvent{Err: err})
		s.close()
		return
	}
	select {
	case <-s.done:
		return // dropped again; run starts over
	default:
	}
	c.mu.Lock()
	if c.mu.sock == s {
		c.mu.ready = true
	}
	c.mu.Unlock()
	c.broadcast(ReconnectEvent{})
}

// dialAny tries the URLs in order; the one that works is moved to the end.
func (c *Conn) dialAny(ctx context.Context) (*socket, error) {
	c.mu.Lock()
	urls := append([]string(nil), c.mu.urls...)
	c.mu.Unlock()
	if len(urls) == 0 {
		routed, err := c.routeURLs(ctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.mu.urls = routed
		c.mu.Unlock()
		urls = routed
	}
	var errs []error
	for _, u := range urls {
		s, err := c.dial(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		c.mu.urls = rotate(c.mu.urls, u)
		c.mu.Unlock()
		return s, nil
	}
	return nil, errors.Join(errs...)
}

// forgetRoutedURLs drops the router's answer so that the next dial asks
// again (router mode only; configured URLs are kept).
func (c *Conn) forgetRoutedURLs() {
	if len(c.cfg.URLs) > 0 {
		return
	}
	c.mu.Lock()
	c.mu.urls = nil
	c.mu.Unlock()
}

// rotate moves u to the end of urls.
func rotate(urls []string, u string) []string {
	out := make([]string, 0, len(urls))
	for _, x := range urls {
		if x != u {
			out = append(out, x)
		}
	}
	return append(out, u)
}

type ctxDialer struct {
	ctx context.Context //nolint:containedctx // lives for one dial only
	d   net.Dialer
}

func (d *ctxDialer) Dial(network, addr string) (net.Conn, error) {
	return d.d.DialContext(d.ctx, network, addr)
}

func (c *Conn) dial(ctx context.Context, url string) (*socket, error) {
	s := &socket{c: c, url: url, done: make(chan struct{})}
	hdr := http.Header{}
	hdr.Set("Sec-WebSocket-Protocol", c.cfg.Subprotocol)
	ws, _, err := gws.NewClient(s, &gws.ClientOption{
		Addr:             url,
		RequestHeader:    hdr,
		HandshakeTimeout: c.cfg.DialTimeout,
		Recovery:         gws.Recovery,
		NewDialer: func() (gws.Dialer, error) {
			return &ctxDialer{ctx: ctx, d: net.Dialer{Timeout: c.cfg.DialTimeout}}, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	if ws.SubProtocol() != c.cfg.Subprotocol {
		_ = ws.NetConn().Close()
		return nil, fmt.Errorf("client: dial %s: server chose subprotocol %q", url, ws.SubProtocol())
	}
	s.ws = ws
	s.text = c.cfg.Subprotocol == protocol.SubprotocolBase64
	s.lastRecv.Store(time.Now().UnixNano())
	c.goFunc(ws.ReadLoop)
	return s, nil
}

func cmdName(cmd *pb.GenericCommand) string {
	if cmd.Op != nil {
		return cmd.GetCmd().String() + "/" + cmd.GetOp().String()
	}
	return cmd.GetCmd().String()
}
