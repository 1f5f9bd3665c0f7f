package transport

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"sync"
	"time"
)

// outFrame is an encoded frame waiting in a send queue. A frame whose
// deadline passed before it reached the wire is dropped: nobody waits for
// its answer any more.
type outFrame struct {
	b        []byte
	deadline time.Time // zero: no deadline (responses, messages)
}

// wconn is one TCP connection with its closing state. The writer goroutine
// owns writes to c; the reader goroutine owns reads.
type wconn struct {
	c         net.Conn
	peer      string
	closed    chan struct{}
	closeOnce sync.Once
}

func newWconn(c net.Conn, peer string) *wconn {
	return &wconn{c: c, peer: peer, closed: make(chan struct{})}
}

// close closes the connection once; both loops then exit.
func (w *wconn) close() {
	w.closeOnce.Do(func() {
		close(w.closed)
		_ = w.c.Close()
	})
}

// readBufSize is the read buffer per connection: a few typical frames.
const readBufSize = 16 << 10

// writeBufSize is the write buffer per connection: large enough to batch
// many small frames into one syscall, small against the send queue bound.
const writeBufSize = 32 << 10

// maxBatch bounds the frames written between flushes, so that under a
// sustained stream each flush (and its WriteTimeout) covers a bounded
// amount of data instead of the whole stream.
const maxBatch = 128

// coalesceBelow is the batch size below which the writer yields once
// before it flushes (writeLoop).
const coalesceBelow = 8

// pingFrame is the encoded framePing.
var pingFrame = appendFrame(nil, &frame{typ: framePing})

// writeLoop writes frames from out to w until ctx is done, w is closed or a
// write fails (which closes w). It batches up to maxBatch queued frames into
// one flush, each batch bounded by WriteTimeout. A batch of fewer than
// coalesceBelow frames yields the processor once before its flush
// (runtime.Gosched): the goroutines already runnable, often callers and
// request workers about to queue a frame to the same peer, run first and
// join the batch. On an idle node nothing else is runnable and the flush
// follows at once; on a busy one a system call, and the peer's wake-up to
// read it, carry several frames instead of one or two. With ping > 0 (dialed
// connections) it writes a ping when nothing was written for that long, so
// the listener's idle timeout only closes dead connections.
func (t *Transport) writeLoop(ctx context.Context, w *wconn, out <-chan outFrame, ping time.Duration) {
	defer w.close()
	bw := bufio.NewWriterSize(w.c, writeBufSize)
	var pingC <-chan time.Time
	if ping > 0 {
		tk := time.NewTicker(ping)
		defer tk.Stop()
		pingC = tk.C
	}
	wrote := false
	for {
		var f outFrame
		select {
		case <-ctx.Done():
			return
		case <-w.closed:
			return
		case <-pingC:
			if wrote {
				wrote = false
				continue
			}
			f = outFrame{b: pingFrame}
		case f = <-out:
		}
		wrote = true
		if err := w.c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
			return
		}
		if !t.writeFrame(ctx, w, bw, f) {
			return
		}
		yielded := false
		for n := 1; n < maxBatch && bw.Buffered() < writeBufSize/2; {
			select {
			case f = <-out:
				if !t.writeFrame(ctx, w, bw, f) {
					return
				}
				n++
				continue
			default:
			}
			if yielded || n >= coalesceBelow {
				break
			}
			yielded = true
			runtime.Gosched()
		}
		if bw.Buffered() > 0 {
			t.stats.flushes.Add(1)
		}
		if err := bw.Flush(); err != nil {
			t.logConnError(w, "flush", err)
			return
		}
	}
}

// writeFirst writes frames (the messages held for a peer while it was
// unreachable) to a new connection before its writer takes the queue,
// flushing every half buffer. False if the connection must close; the
// frames not written are then lost like those in flight.
func (t *Transport) writeFirst(ctx context.Context, w *wconn, frames []outFrame) bool {
	if len(frames) == 0 {
		return true
	}
	bw := bufio.NewWriterSize(w.c, writeBufSize)
	for _, f := range frames {
		if err := w.c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
			return false
		}
		if !t.writeFrame(ctx, w, bw, f) {
			return false
		}
		if bw.Buffered() >= writeBufSize/2 {
			t.stats.flushes.Add(1)
			if err := bw.Flush(); err != nil {
				t.logConnError(w, "flush", err)
				return false
			}
		}
	}
	if bw.Buffered() > 0 {
		t.stats.flushes.Add(1)
	}
	if err := bw.Flush(); err != nil {
		t.logConnError(w, "flush", err)
		return false
	}
	return true
}

// writeFrame buffers one frame, applying faults and expiry. It returns
// false if the connection must close.
func (t *Transport) writeFrame(ctx context.Context, w *wconn, bw *bufio.Writer, f outFrame) bool {
	if !f.deadline.IsZero() && time.Now().After(f.deadline) {
		t.stats.expired.Add(1)
		return true
	}
	drop, delay := t.cfg.Faults.outbound(w.peer)
	if drop {
		return true
	}
	if delay > 0 {
		if bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return false
			}
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-w.closed:
			timer.Stop()
			return false
		case <-timer.C:
		}
		if err := w.c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
			return false
		}
	}
	if _, err := bw.Write(f.b); err != nil {
		t.logConnError(w, "write", err)
		return false
	}
	t.stats.framesWritten.Add(1)
	return true
}
