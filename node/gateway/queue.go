package gateway

import (
	"net"
	"sync"
	"time"
)

// fifo is a bounded FIFO queue with an on-demand consumer: the push that
// finds no consumer running starts one (through the start function given
// to push), and the consumer stops when it finds the queue empty. An idle
// connection therefore holds neither a queue buffer (a buffered channel of
// the same bound would hold it for the connection's life) nor a parked
// goroutine. After close, pushes are dropped and the consumer stops.
type fifo[T any] struct {
	limit int

	mu      sync.Mutex
	items   []T
	running bool // a consumer is running (started and not yet stopped)
	closed  bool
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
	if len(q.items) >= q.limit {
		return false
	}
	q.items = append(q.items, v)
	if !q.running {
		q.running = true
		start()
	}
	return true
}

// pop removes and returns the oldest item for the consumer. When the queue
// is empty or closed it returns false and the consumer must stop.
func (q *fifo[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 || q.closed {
		q.running = false
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil
	}
	return v, true
}

// takeAll removes and returns every queued item in order for the consumer.
// When the queue is empty or closed it returns nil and the consumer must
// stop.
func (q *fifo[T]) takeAll() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	if len(items) == 0 || q.closed {
		q.running = false
		return nil
	}
	return items
}

// handOff ends a consumer's round: when items were queued meanwhile it
// calls start (under the queue's lock, so start must only launch the next
// consumer), else the consumer stops.
func (q *fifo[T]) handOff(start func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || q.closed {
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
	q.items = nil
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
	return len(q.items)
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

	mu     sync.Mutex
	corked bool
	buf    *[]byte // from batchBufs while corked
}

// batchBufs recycles cork buffers, so only sockets that are writing hold one.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
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

// cork starts buffering writes.
func (b *batchConn) cork() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.corked {
		b.corked = true
		b.buf = batchBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
	}
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
