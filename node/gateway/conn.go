package gateway

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// outFrame is one encoded frame waiting for the writer: data, then, when
// peer is set (a push to a binary socket), GenericCommand field 4 (peerId)
// with peer, appended as the frame is written (appendOutFrame), so that a
// push marshalled once serves all its receivers without a copy for each
// (DeliverEncoded).
type outFrame struct {
	data []byte
	peer string
	text bool
}

// conn is one client WebSocket. Besides gws's read loop it has two
// goroutines, each running only while it has work (see fifo): the worker,
// the only one that runs commands, started by the first command queued
// while none runs; and the writer, which writes all the frames it finds
// queued in one write system call, started likewise by a frame another
// goroutine queued. Whoever holds the out queue's consumer place writes:
// the writer; the worker, for the frames it queued itself (a response, and
// the pushes held back while it ran the command) after the command, so a
// response costs no hand-off and is on the wire before the worker goes on;
// or a delivering goroutine that found nothing queued, for one
// non-blocking write of its push (writeNow). The gateway's sweeper closes
// sockets that stay silent or
// never log in. A socket found slow (its outbound queue full) is closed by a
// third, short-lived goroutine, at most one per socket, so that the
// delivering goroutine never waits for the socket.
type conn struct {
	g  *Gateway
	ws *gws.Conn
	bc *batchConn // ws's socket
	id uint64
	// sub is the negotiated subprotocol.
	sub string
	ip  string // source address; holds one of its per-address slots
	// in holds decoded commands for the worker (at most InboundQueue; a
	// client exceeding it is disconnected), out encoded frames for the
	// writer (at most OutboundQueue; a client not reading fast enough is
	// disconnected).
	in  *fifo[*pb.GenericCommand]
	out *fifo[outFrame]
	// opened is when the socket was accepted (Unix nanos), for the login
	// timeout.
	opened int64

	closeOnce sync.Once
	shutOnce  sync.Once
	// slowing is set by the first push that found the outbound queue full;
	// it started the goroutine closing the socket as a slow consumer.
	slowing atomic.Bool
	// lastRead is when the socket last delivered a frame (Unix nanos).
	lastRead atomic.Int64
	// readDeadline is the socket's read deadline (Unix nanos) as touch
	// last set it; only the read loop touches it.
	readDeadline int64

	// mu guards the fields below.
	mu sync.Mutex
	// sessions are the sessions open on this socket, in login order; the
	// first is the default session for requests without peerId.
	sessions []*clientSession
	// busy is set while the worker runs a command: pushes for this socket are
	// then held in deferred and written after the command's response, so a
	// client always sees a response before the pushes it caused.
	busy     bool
	deferred []outFrame
	// loggedIn is set by the first successful login (ends the login timer).
	loggedIn bool

	// writeDeadline is the socket's write deadline (Unix nanos) as the
	// consumer of the out queue last set it (writeFrames); only that
	// consumer touches it.
	writeDeadline int64

	// writing is set (by claimWriter, under the out queue's lock) when a
	// frame the worker queued made the worker the queue's consumer: the
	// worker writes after the command (writeInline). Only the worker
	// touches it.
	writing bool
}

func newConn(g *Gateway, ws *gws.Conn, bc *batchConn, ip string) *conn {
	c := &conn{
		g:      g,
		ws:     ws,
		bc:     bc,
		ip:     ip,
		id:     g.nextConn.Add(1),
		sub:    ws.SubProtocol(),
		in:     newFifo[*pb.GenericCommand](g.cfg.InboundQueue),
		out:    newFifo[outFrame](g.cfg.OutboundQueue),
		opened: time.Now().UnixNano(),
	}
	ws.Session().Store(sessionKeyConn, c)
	c.touch()
	g.metrics.connections.Inc()
	return c
}

// logger returns the connection's logger. It is built per call, not kept:
// a connection logs rarely, and a handler per socket costs each idle socket
// a few hundred bytes.
func (c *conn) logger() *slog.Logger { return c.g.log.With("conn", c.id) }

const sessionKeyConn = "conn"

// oneValue is a socket's gws session storage (gws.ServerOption.NewSession):
// one key and its value, which is all the gateway keeps there (the socket's
// conn, under sessionKeyConn); gws's default is a map and a mutex per
// socket. Storing another key replaces the pair.
type oneValue struct {
	mu  sync.Mutex
	key string
	val any
	set bool
}

func newOneValue() gws.SessionStorage { return &oneValue{} }

func (s *oneValue) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set {
		return 1
	}
	return 0
}

func (s *oneValue) Load(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.set || s.key != key {
		return nil, false
	}
	return s.val, true
}

func (s *oneValue) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set && s.key == key {
		s.key, s.val, s.set = "", nil, false
	}
}

func (s *oneValue) Store(key string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.val, s.set = key, value, true
}

func (s *oneValue) Range(f func(key string, value any) bool) {
	s.mu.Lock()
	key, val, set := s.key, s.val, s.set
	s.mu.Unlock()
	if set {
		f(key, val)
	}
}

func connOf(ws *gws.Conn) *conn {
	v, ok := ws.Session().Load(sessionKeyConn)
	if !ok {
		return nil
	}
	c, _ := v.(*conn)
	return c
}

// handler adapts gws callbacks. Callbacks never block: they decode, enqueue
// and return.
type handler struct{ g *Gateway }

func (h *handler) OnOpen(*gws.Conn) {}

func (h *handler) OnClose(ws *gws.Conn, err error) {
	if c := connOf(ws); c != nil {
		c.shutdown(err)
	}
}

func (h *handler) OnPing(ws *gws.Conn, payload []byte) {
	if c := connOf(ws); c != nil {
		c.touch()
	}
	_ = ws.WritePong(payload)
}

func (h *handler) OnPong(ws *gws.Conn, _ []byte) {
	if c := connOf(ws); c != nil {
		c.touch()
	}
}

// touch records read activity. The sweeper closes the socket with 4107
// when nothing arrived for IdleTimeout; the read deadline, between 1.5 and
// 2 IdleTimeouts after the last read, is only a backstop for a sweeper that
// cannot run. It is moved only when less than 1.5 IdleTimeouts of it are
// left, not for every frame: each move is a timer update in the runtime's
// poller. Only the read loop calls it (and newConn, before the loop starts).
func (c *conn) touch() {
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	idle := int64(c.g.cfg.IdleTimeout)
	if c.readDeadline-now < idle+idle/2 {
		c.readDeadline = now + 2*idle
		_ = c.ws.SetReadDeadline(time.Unix(0, c.readDeadline))
	}
}

func (h *handler) OnMessage(ws *gws.Conn, msg *gws.Message) {
	defer func() { _ = msg.Close() }()
	c := connOf(ws)
	if c == nil {
		return
	}
	c.touch()
	text := msg.Opcode == gws.OpcodeText
	cmd, err := protocol.Decode(msg.Bytes(), text)
	if err != nil {
		c.rejectFrame(msg.Bytes(), text, err)
		return
	}
	if !c.in.push(cmd, c.startWorker) {
		h.g.metrics.floodDisconnects.Inc()
		c.logger().Warn("Closing connection: inbound command queue full", "queue", c.in.limit)
		c.close(closeFlood, "too many pending commands")
	}
}

// rejectFrame answers an undecodable frame with 4114 on its i when the i can
// be recovered from the raw bytes; without an i there is nobody to answer
// (an unsolicited error would break the JS SDK), so it is only counted.
func (c *conn) rejectFrame(frame []byte, text bool, err error) {
	c.g.metrics.badFrames.Inc()
	if c.g.log.Enabled(c.g.ctx, slog.LevelDebug) {
		c.logger().Debug("Rejecting malformed frame", "err", err)
	}
	if text {
		return
	}
	i, ok := scanRequestID(frame)
	if !ok {
		return
	}
	req := &pb.GenericCommand{I: &i}
	c.sendCommand(protocol.ErrorResponse(req, protocol.ErrUnparseableRawMessage.WithDetail("%v", err)))
}

// scanRequestID finds top-level field 5 (i) in a protobuf frame that failed to
// decode as a whole.
func scanRequestID(b []byte) (int32, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == 5 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, false
			}
			return int32(v), true
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, false
		}
		b = b[m:]
	}
	return 0, false
}

// startWorker launches the worker on one of the gateway's warm goroutines
// (Gateway.pool); the inbound queue calls it (under its lock) when a command
// arrives and none runs.
func (c *conn) startWorker() { c.g.pool.Run((*connWorker)(c)) }

// connWorker and connWriter are a conn as the pool's task of its worker and
// of its writer: handing them over costs no allocation, where the method
// values c.work and c.write would allocate a closure each time.
type (
	connWorker conn
	connWriter conn
)

func (w *connWorker) Run() { (*conn)(w).work() }
func (w *connWriter) Run() { (*conn)(w).write() }

// work runs the queued commands in arrival order and returns when the
// queue is empty or closed.
func (c *conn) work() {
	for {
		cmd, ok := c.in.pop()
		if !ok {
			return
		}
		c.setBusy(true)
		c.g.dispatch(c, cmd)
		c.setBusy(false)
		if c.writing {
			c.writing = false
			c.writeInline()
		}
	}
}

// expired closes the socket when it stayed silent for IdleTimeout (4107) or
// has not logged in within LoginTimeout of opening (4108). The gateway's
// sweeper calls it.
func (c *conn) expired(now time.Time) {
	if now.Sub(time.Unix(0, c.lastRead.Load())) > c.g.cfg.IdleTimeout {
		c.g.metrics.idleDisconnects.Inc()
		c.close(uint16(protocol.ErrReadTimeout.Code), protocol.ErrReadTimeout.Reason)
		return
	}
	if now.Sub(time.Unix(0, c.opened)) <= c.g.cfg.LoginTimeout {
		return
	}
	c.mu.Lock()
	logged := c.loggedIn
	c.mu.Unlock()
	if !logged {
		c.close(uint16(protocol.ErrLoginTimeout.Code), protocol.ErrLoginTimeout.Reason)
	}
}

func (c *conn) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	var flush []outFrame
	if !b {
		flush, c.deferred = c.deferred, nil
	}
	c.mu.Unlock()
	for _, f := range flush {
		c.respond(f)
	}
}

// startWriter launches the writer on one of the gateway's warm goroutines
// (Gateway.pool); the outbound queue calls it (under its lock) when a frame
// is queued and none runs.
func (c *conn) startWriter() { c.g.pool.Run((*connWriter)(c)) }

// write is the writer goroutine: each round it takes every queued frame
// and writes it (writeFrames). It returns when the queue is empty or
// closed.
func (c *conn) write() {
	for {
		if c.bc.hasPending() {
			c.renewWriteDeadline()
			if err := c.bc.flushPending(); err != nil {
				c.shutdown(err)
				return
			}
		}
		frames := c.out.takeAll()
		if frames == nil || !c.writeFrames(frames) {
			return
		}
		c.out.recycle(frames)
	}
}

// renewWriteDeadline sets the socket's write deadline WriteTimeout ahead
// when less than half of it is left: a fan-out writes a frame to a
// thousand sockets, and a deadline costs each one a timer update in the
// runtime's poller. The out queue's consumer calls it.
func (c *conn) renewWriteDeadline() {
	if now := time.Now().UnixNano(); c.writeDeadline-now < int64(c.g.cfg.WriteTimeout/2) {
		c.writeDeadline = now + int64(c.g.cfg.WriteTimeout)
		_ = c.ws.SetWriteDeadline(time.Unix(0, c.writeDeadline))
	}
}

// claimWriter is the start function of the worker's own frames (respond):
// instead of starting a writer goroutine, the worker writes them itself
// after the command (writeInline), which saves a goroutine hand-off per
// response and puts the response on the wire before the worker goes on.
func (c *conn) claimWriter() { c.writing = true }

// writeInline is one writer round on the worker: it writes the frames
// queued now and hands what is queued meanwhile to a writer goroutine, so
// pushes arriving for a busy socket never keep its worker from its next
// command. The worker blocks on its own socket only (for at most
// WriteTimeout); other goroutines' pushes wait in the queue as they would
// for the writer goroutine.
func (c *conn) writeInline() {
	frames := c.out.takeAll()
	if frames == nil || !c.writeFrames(frames) {
		return
	}
	c.out.recycle(frames)
	c.out.handOff(c.startWriter)
}

// writeFrames writes frames as one batch: one write system call (up to
// batchFlushBytes each; batchConn.writeFrames encodes the frames itself,
// not through gws, which would copy each frame once more), within one
// WriteTimeout. Only the goroutine that holds the writer's place (the out
// queue's consumer) calls it. On an error it shuts the connection down and
// returns false.
func (c *conn) writeFrames(frames []outFrame) bool {
	c.renewWriteDeadline()
	if err := c.bc.writeFrames(frames); err != nil {
		c.shutdown(err)
		return false
	}
	c.g.metrics.framesOut.Add(float64(len(frames)))
	c.g.metrics.writeBatches.Inc()
	return true
}

// MaxOutFrameSize bounds one frame written to a client (gws refuses to
// write a larger one). Engines cut history pages and query results to fit
// well below it; encode is the backstop.
const MaxOutFrameSize = 4 * protocol.MaxFrameSize

// encode serializes cmd for the socket's subprotocol. A frame that cannot be
// encoded (a missing proto2 required field: a bug) is logged and dropped. A
// response larger than MaxOutFrameSize is replaced by error 4109 naming the
// limit and a larger push is dropped (counted): writing it would close the
// socket, and no client may get another's socket closed by making the
// answers it receives large.
func (c *conn) encode(cmd *pb.GenericCommand) (outFrame, bool) {
	data, text, err := protocol.Encode(cmd, c.sub)
	if err != nil {
		c.logger().Error("Dropping unencodable frame", "cmd", cmd.GetCmd().String(), "err", err)
		return outFrame{}, false
	}
	if len(data) > MaxOutFrameSize {
		c.g.metrics.oversizedFrames.Inc()
		if cmd.I == nil {
			c.logger().Warn("Dropping oversized push", "cmd", cmd.GetCmd().String(), "bytes", len(data), "limit", MaxOutFrameSize)
			return outFrame{}, false
		}
		refusal := protocol.ErrorResponse(cmd, protocol.ErrFrameTooLong.WithDetail(
			"the answer is %d bytes, over the %d-byte frame limit: ask for fewer results", len(data), MaxOutFrameSize))
		if data, text, err = protocol.Encode(refusal, c.sub); err != nil {
			c.logger().Error("Dropping unencodable frame", "cmd", refusal.GetCmd().String(), "err", err)
			return outFrame{}, false
		}
	}
	return outFrame{data: data, text: text}, true
}

// respond queues a frame of the worker's (a response, or a push held back
// while it ran the command): the worker writes it after the command
// (claimWriter) unless a writer goroutine runs already.
func (c *conn) respond(f outFrame) {
	if !c.out.push(f, c.claimWriter) {
		c.slow()
	}
}

// sendCommand encodes and enqueues a response or push for this socket.
func (c *conn) sendCommand(cmd *pb.GenericCommand) {
	if f, ok := c.encode(cmd); ok {
		c.enqueue(f)
	}
}

// pushCommand encodes cmd and sends it through push, so that it follows the
// response of the command being executed.
func (c *conn) pushCommand(cmd *pb.GenericCommand) {
	if f, ok := c.encode(cmd); ok {
		c.push(f)
	}
}

// push enqueues a push, holding it back while the worker runs a command.
func (c *conn) push(f outFrame) {
	c.mu.Lock()
	if c.busy {
		if len(c.deferred) >= c.out.limit {
			c.mu.Unlock()
			c.slow()
			return
		}
		c.deferred = append(c.deferred, f)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.enqueue(f)
}

// enqueue queues f for the writer, or, when the socket has nothing queued
// and no writer runs, writes it at once (writeNow).
func (c *conn) enqueue(f outFrame) {
	ok, claimed := c.out.pushOrClaim(f, c.startWriter)
	switch {
	case !ok:
		c.slow()
	case claimed:
		c.writeNow(f)
	}
}

// writeNow writes f on the delivering goroutine with one non-blocking
// system call (batchConn.tryWrite): a push to an idle socket (a chat room's
// fan-out reaches a thousand of them) costs no writer goroutine and no
// hand-off. The caller holds the writer's place (fifo.pushOrClaim); what
// the socket does not take at once, and a frame that cannot be written so,
// goes to the writer goroutine, which also meets any error of the socket's
// and shuts it down, so the delivering goroutine never waits for a socket.
func (c *conn) writeNow(f outFrame) {
	buf := getBatchBuf()
	*buf = appendOutFrame(*buf, f)
	left, err := c.bc.tryWrite(*buf) // keeps a copy of what it did not write
	putBatchBuf(buf)
	switch {
	case err != nil:
		c.out.pushFront(f, c.startWriter)
	case left:
		c.out.resume(c.startWriter)
	default:
		c.g.metrics.framesOut.Inc()
		c.g.metrics.writeBatches.Inc()
		c.out.handOff(c.startWriter)
	}
}

// slow hands the socket to a goroutine that closes it as a slow consumer
// (1013) and returns at once: the caller is a delivering goroutine (a
// conversation's push drain, the presence fan-out) that must not wait for
// this socket's write lock, which a writer blocked on the client holds for
// up to WriteTimeout and the close for up to a second. Only the first call
// starts the closer; later pushes find the queue full and are dropped. The
// closer starts under the outbound queue's lock while it is open, so never
// after release (see release).
func (c *conn) slow() {
	if !c.slowing.CompareAndSwap(false, true) {
		return
	}
	c.g.metrics.slowDisconnects.Inc()
	c.logger().Warn("Closing slow connection: outbound queue full", "queue", c.out.limit)
	c.out.whileOpen(func() {
		c.g.goFunc(func() { c.close(closeSlowClient, "slow consumer") })
	})
}

// close sends a close frame with code and tears the connection down.
func (c *conn) close(code uint16, reason string) {
	c.closeOnce.Do(func() {
		_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.ws.WriteClose(code, []byte(reason))
		_ = c.ws.NetConn().Close()
	})
	c.shutdown(errors.New(reason))
}

// shutdown releases the connection's sessions and stops its goroutines. It
// runs once, whoever notices the end first (reader, writer, or close).
func (c *conn) shutdown(cause error) {
	c.shutOnce.Do(func() { c.release(cause) })
}

func (c *conn) release(cause error) {
	// Closing the queues first stops the worker, writer and slow-consumer
	// closer from being started again: every start happens under a queue's lock before this,
	// while the read loop (which runs release or waits for it in OnClose)
	// still holds its place in the gateway's wait group.
	c.in.close()
	c.out.close()
	_ = c.ws.NetConn().Close()
	c.g.untrack(c)
	c.g.limits.connsOpen.Release(c.ip)
	c.g.metrics.connections.Dec()
	c.mu.Lock()
	sessions := c.sessions
	c.sessions = nil
	c.mu.Unlock()
	for _, s := range sessions {
		c.g.endSession(s, false)
	}
}
