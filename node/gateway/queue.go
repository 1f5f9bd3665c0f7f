package gateway

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/encoding/protowire"
)

// fifo is a bounded FIFO queue with an on-demand consumer: the push that
// finds no consumer running starts one (through the start function given
// to push), and the consumer stops when it finds the queue empty. An idle
// connection therefore holds neither a queue buffer (a buffered channel of
// the same bound would hold it for the connection's life) nor a parked
// goroutine, only the smallest buffer (keptItemBytes at most), emptied,
// which the next burst reuses. After close, pushes are dropped and the
// consumer stops.
type fifo[T any] struct {
	limit int

	mu sync.Mutex
	// items[head:] are queued; pop advances head.
	items   []T
	head    int
	running bool // a consumer is running (started and not yet stopped)
	closed  bool
}

// keptItemBytes bounds the emptied buffer a fifo keeps for its next burst
// (one outbound frame, eight commands); a larger one is dropped.
const keptItemBytes = 64

// compact moves the queued items to the front of a full buffer before an
// append, so that the popped ones never make it grow. Under mu.
func (q *fifo[T]) compact() {
	if q.head == 0 || len(q.items) < cap(q.items) {
		return
	}
	n := copy(q.items, q.items[q.head:])
	clear(q.items[n:])
	q.items, q.head = q.items[:n], 0
}

// reset empties the queue, keeping its buffer when it is small. Under mu.
func (q *fifo[T]) reset() {
	var zero T
	if q.closed || cap(q.items)*int(unsafe.Sizeof(zero)) > keptItemBytes {
		q.items = nil
	} else {
		clear(q.items)
		q.items = q.items[:0]
	}
	q.head = 0
}

func newFifo[T any](limit int) *fifo[T] { return &fifo[T]{limit: limit} }

// push appends v and, when no consumer runs, calls start (under the queue's
// lock, so start must only launch the consumer). It returns false, dropping
// v, when limit items are queued; a closed queue drops v and returns true.
func (q *fifo[T]) push(v T, start func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return true
	}
	if len(q.items)-q.head >= q.limit {
		return false
	}
	q.compact()
	q.items = append(q.items, v)
	if !q.running {
		q.running = true
		start()
	}
	return true
}

// pushOrClaim is push for a caller that can consume v itself without
// blocking (deliver): when the queue is empty and no consumer runs, it
// makes the caller the consumer instead of queueing v (claimed), and the
// caller ends its turn with handOff, resume or pushFront. Otherwise it is
// push.
func (q *fifo[T]) pushOrClaim(v T, start func()) (ok, claimed bool) {
	q.mu.Lock()
	if !q.closed && !q.running && len(q.items) == q.head {
		q.running = true
		q.mu.Unlock()
		return true, true
	}
	q.mu.Unlock()
	return q.push(v, start), false
}

// pushFront puts v before every queued item and calls start (under the
// queue's lock) unless the queue is closed: the consumer hands an item it
// could not finish to the next consumer. It ignores the limit (one item
// over it at most: the consumer's own).
func (q *fifo[T]) pushFront(v T, start func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.running = false
		return
	}
	q.compact()
	q.items = append(q.items, v)
	copy(q.items[q.head+1:], q.items[q.head:])
	q.items[q.head] = v
	start()
}

// resume hands the consumer's place to the next consumer, calling start
// under the queue's lock unless the queue is closed, whether items are
// queued or not (the consumer left work of its own, see batchConn.pending).
func (q *fifo[T]) resume(start func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.running = false
		return
	}
	start()
}

// pop removes and returns the oldest item for the consumer. When the queue
// is empty or closed it returns false and the consumer must stop.
func (q *fifo[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == q.head || q.closed {
		q.running = false
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.reset()
	}
	return v, true
}

// takeAll removes and returns every queued item in order for the consumer.
// When the queue is empty or closed it returns nil and the consumer must
// stop. The consumer may give the slice back when done with it (recycle).
func (q *fifo[T]) takeAll() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items[q.head:]
	q.items, q.head = nil, 0
	if len(items) == 0 || q.closed {
		q.running = false
		return nil
	}
	return items
}

// recycle gives back a slice takeAll returned, once the consumer is done
// with it: the queue keeps it for its next burst if it has no buffer and
// the slice is small (keptItemBytes).
func (q *fifo[T]) recycle(items []T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.items == nil && !q.closed {
		q.items = items
		q.reset()
	}
}

// handOff ends a consumer's round: when items were queued meanwhile it
// calls start (under the queue's lock, so start must only launch the next
// consumer), else the consumer stops.
func (q *fifo[T]) handOff(start func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == q.head || q.closed {
		q.running = false
		return
	}
	start()
}

// close drops the queued items and every later push.
func (q *fifo[T]) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.items, q.head = nil, 0
}

// whileOpen calls f under the queue's lock unless the queue is closed (f
// must only launch a goroutine), so that f never runs after close.
func (q *fifo[T]) whileOpen(f func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		f()
	}
}

// len returns the number of queued items.
func (q *fifo[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// batchFlushBytes is the most a batch of frames (batchConn.writeFrames)
// buffers before writing.
const batchFlushBytes = 64 << 10

// batchConn is a client socket with the writes of the out queue's
// consumer: writeFrames encodes every frame the writer took into one buffer
// and writes it with one system call (up to batchFlushBytes each), and
// tryWrite writes one push without blocking. gws's own writes (the
// handshake's response, a pong, a close frame) pass through Write, whole
// frames each, under the same lock, so frames never interleave. Reads and
// deadlines pass through.
type batchConn struct {
	net.Conn
	// raw is the socket's descriptor for tryWrite; nil when the connection
	// has none (TLS), and then every frame goes through the writer.
	raw syscall.RawConn

	mu sync.Mutex
	// pending is the part of a frame tryWrite wrote only in part: it is
	// written before anything else (Write, writeFrames, flushPending).
	pending []byte
	// closing is set when gws writes a close frame (every gws write after
	// the handshake is one whole frame): no frame may follow it, so
	// writeFrames and tryWrite stop.
	closing bool
	// direct is tryWrite's write: its frame and, after raw.Write, what
	// the system call returned. Fields (and a callback bound once), not
	// a closure's captures, so a direct write allocates nothing.
	direct struct {
		frame []byte
		n     int
		err   error
	}
	directFn func(fd uintptr) bool
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			b.raw = raw
			b.directFn = b.writeDirect
		}
	}
	return b
}

// writeDirect is the raw.Write callback of tryWrite: one write(2) of
// b.direct.frame, never waiting for the socket (the writer does). b.mu is
// held.
func (b *batchConn) writeDirect(fd uintptr) bool {
	b.direct.n, b.direct.err = syscall.Write(int(fd), b.direct.frame)
	return true
}

// batchBufs recycles the buffers frames are encoded into, so only sockets
// that are writing hold one.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// getBatchBuf takes an empty buffer from batchBufs.
func getBatchBuf() *[]byte {
	return batchBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
}

// putBatchBuf returns buf to batchBufs, empty, unless it grew past
// batchFlushBytes (a large frame): the pool keeps only ordinary ones.
func putBatchBuf(buf *[]byte) {
	if cap(*buf) <= batchFlushBytes {
		*buf = (*buf)[:0]
		batchBufs.Put(buf)
	}
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if isCloseFrame(p) {
		b.closing = true
	}
	if err := b.flushPendingLocked(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

// errSocketClosing: a close frame was written, no frame may follow.
var errSocketClosing = errors.New("gateway: the socket is closing")

// writeFrames writes what tryWrite left, then frames, encoded as final,
// unmasked, uncompressed frames (as gws writes them) into one buffer,
// with one write system call per batchFlushBytes, blocking within the
// socket's write deadline. Once a close frame was written it writes
// nothing and returns errSocketClosing.
func (b *batchConn) writeFrames(frames []outFrame) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return errSocketClosing
	}
	buf := getBatchBuf()
	defer putBatchBuf(buf)
	out := append(*buf, b.pending...)
	b.pending = nil
	var err error
	for _, f := range frames {
		out = appendOutFrame(out, f)
		if len(out) >= batchFlushBytes {
			if _, err = b.Conn.Write(out); err != nil {
				break
			}
			out = out[:0]
		}
	}
	if err == nil && len(out) > 0 {
		_, err = b.Conn.Write(out)
	}
	*buf = out
	return err
}

// isCloseFrame reports whether p starts a close frame as gws writes them:
// final (FIN), no extension bits, opcode 8. The first byte alone would not
// do: the handshake's response, written through the same socket, starts
// with 'H' (0x48), whose low bits are opcode 8 too.
func isCloseFrame(p []byte) bool {
	return len(p) > 0 && p[0] == 0x80|byte(gws.OpcodeCloseConnection)
}

func (b *batchConn) flushPendingLocked() error {
	if len(b.pending) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.pending)
	b.pending = nil
	return err
}

// hasPending reports whether part of a frame waits to be written.
func (b *batchConn) hasPending() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) > 0
}

// flushPending writes what tryWrite left (blocking, within the socket's
// write deadline).
func (b *batchConn) flushPending() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushPendingLocked()
}

// errNoDirectWrite: tryWrite did not write (no descriptor, another write
// in progress, a close frame written, or a pending part comes first).
var errNoDirectWrite = errors.New("gateway: no direct write")

// tryWrite writes one encoded WebSocket frame with one non-blocking system
// call on the caller's goroutine. What the socket does not take at once is
// kept (pending) and left reports it: the caller must start the writer,
// which writes it before anything else. errNoDirectWrite means nothing was
// written and the frame must be queued; another error is the socket's.
func (b *batchConn) tryWrite(frame []byte) (left bool, err error) {
	if b.raw == nil {
		return false, errNoDirectWrite
	}
	// Someone writing blocks on the socket (a pong, a close frame): the
	// frame goes to the writer, the delivering goroutine does not wait.
	if !b.mu.TryLock() {
		return false, errNoDirectWrite
	}
	defer b.mu.Unlock()
	if b.closing || len(b.pending) > 0 {
		return false, errNoDirectWrite
	}
	b.direct.frame = frame
	err = b.raw.Write(b.directFn)
	n, werr := b.direct.n, b.direct.err
	b.direct.frame, b.direct.err = nil, nil
	if err != nil {
		return false, err
	}
	switch {
	case errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR):
		n = 0
	case werr != nil:
		return false, werr
	}
	if n < len(frame) {
		b.pending = append([]byte(nil), frame[n:]...)
		return true, nil
	}
	return false, nil
}

// appendOutFrame encodes f as a WebSocket frame (appendFrame), its peerId
// field after its data.
func appendOutFrame(dst []byte, f outFrame) []byte {
	op := gws.OpcodeBinary
	if f.text {
		op = gws.OpcodeText
	}
	if f.peer == "" {
		return appendFrame(dst, op, f.data)
	}
	field := 1 + protowire.SizeBytes(len(f.peer))
	dst = appendFrameHeader(dst, op, len(f.data)+field)
	dst = append(dst, f.data...)
	dst = protowire.AppendTag(dst, 4, protowire.BytesType)
	return protowire.AppendString(dst, f.peer)
}

// appendFrame encodes a final, unmasked server frame (RFC 6455 5.2), as gws
// writes them without compression.
func appendFrame(dst []byte, op gws.Opcode, payload []byte) []byte {
	return append(appendFrameHeader(dst, op, len(payload)), payload...)
}

// appendFrameHeader encodes the header of appendFrame's frame of n bytes.
func appendFrameHeader(dst []byte, op gws.Opcode, n int) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return dst
}
