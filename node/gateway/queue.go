package gateway

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/lxzan/gws"
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
// (two outbound frames, eight commands); a larger one is dropped.
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

// corkFlushBytes is the most a corked socket buffers before writing.
const corkFlushBytes = 64 << 10

// batchConn lets the connection's writer coalesce the frames it finds queued
// into one write system call: between cork and uncork, writes to the socket
// (by gws, whoever calls it: the writer, a pong from the reader, a close
// frame) are appended to a buffer, written when it reaches corkFlushBytes,
// at uncork, or before the socket closes. Uncorked, a write goes straight
// to the socket. Reads and deadlines pass through.
type batchConn struct {
	net.Conn
	// raw is the socket's descriptor for tryWrite; nil when the connection
	// has none (TLS), and then every frame goes through the writer.
	raw syscall.RawConn

	mu     sync.Mutex
	corked bool
	buf    *[]byte // from batchBufs while corked
	// pending is the part of a frame tryWrite wrote only in part: it is
	// written before anything else (Write, cork, flushPending).
	pending []byte
	// closing is set when gws writes a close frame (every gws write after
	// the handshake is one whole frame): no frame may follow it, so
	// tryWrite stops.
	closing bool
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			b.raw = raw
		}
	}
	return b
}

// batchBufs recycles cork buffers, so only sockets that are writing hold one.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if isCloseFrame(p) {
		b.closing = true
	}
	if !b.corked {
		if err := b.flushPendingLocked(); err != nil {
			return 0, err
		}
		return b.Conn.Write(p)
	}
	*b.buf = append(*b.buf, p...)
	if len(*b.buf) >= corkFlushBytes {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (b *batchConn) flushLocked() error {
	if len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// isCloseFrame reports whether p starts a close frame as gws writes them:
// final (FIN), no extension bits, opcode 8. The first byte alone would not
// do: the handshake's response, written through the same socket, starts
// with 'H' (0x48), whose low bits are opcode 8 too.
func isCloseFrame(p []byte) bool {
	return len(p) > 0 && p[0] == 0x80|byte(gws.OpcodeCloseConnection)
}

// cork starts buffering writes.
func (b *batchConn) cork() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
		b.corked = true
		b.buf = batchBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
		*b.buf = append((*b.buf)[:0], b.pending...)
		b.pending = nil
	}
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
// in progress, a close frame written, or the writer's batch or a pending
// part comes first).
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
	if b.corked || b.closing || len(b.pending) > 0 {
		return false, errNoDirectWrite
	}
	var n int
	var werr error
	if err := b.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), frame)
		return true // never wait for the socket: the writer does
	}); err != nil {
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

// appendFrame encodes a final, unmasked server frame (RFC 6455 5.2), as gws
// writes them without compression.
func appendFrame(dst []byte, op gws.Opcode, payload []byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// uncork writes what was buffered since cork and stops buffering.
func (b *batchConn) uncork() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
		return nil
	}
	err := b.flushLocked()
	b.corked = false
	if cap(*b.buf) <= corkFlushBytes {
		batchBufs.Put(b.buf)
	}
	b.buf = nil
	return err
}

// closeFlushTimeout bounds the write of what is buffered at Close.
const closeFlushTimeout = time.Second

// Close writes what is buffered (a close frame written while corked), for at
// most closeFlushTimeout, and closes the socket. A write in progress (a
// slow client) is not waited for: closing the socket ends it.
func (b *batchConn) Close() error {
	if b.mu.TryLock() {
		if b.corked {
			_ = b.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			_ = b.flushLocked()
		}
		b.mu.Unlock()
	}
	return b.Conn.Close()
}
