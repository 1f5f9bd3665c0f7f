package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/lxzan/gws"
)

// TestFifoBoundOrderAndConsumer checks the queue's bound, its order, that
// a consumer is started only when none runs and stops on an empty or closed
// queue, and that an emptied queue holds no items.
func TestFifoBoundOrderAndConsumer(t *testing.T) {
	q := newFifo[int](3)
	starts := 0
	start := func() { starts++ }
	for i := range 3 {
		if !q.push(i, start) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if starts != 1 {
		t.Fatalf("3 pushes started %d consumers, want 1", starts)
	}
	if q.push(3, start) {
		t.Fatal("push beyond the limit accepted")
	}
	if v, ok := q.pop(); !ok || v != 0 {
		t.Fatalf("pop = %d %v", v, ok)
	}
	if !q.push(3, start) || starts != 1 {
		t.Fatalf("push after a pop: refused or started another consumer (%d)", starts)
	}
	if got := q.takeAll(); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("takeAll = %v", got)
	}
	if q.items != nil || q.len() != 0 {
		t.Fatalf("emptied queue holds %v", q.items)
	}
	// The consumer finds the queue empty and stops; the next push starts
	// one again.
	if got := q.takeAll(); got != nil {
		t.Fatalf("takeAll of an empty queue = %v", got)
	}
	q.push(7, start)
	if starts != 2 {
		t.Fatalf("push after the consumer stopped started %d consumers in total, want 2", starts)
	}
	if v, ok := q.pop(); !ok || v != 7 || len(q.items) != 0 || q.head != 0 {
		t.Fatalf("pop = %d %v, left %v from %d", v, ok, q.items, q.head)
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	// A closed queue drops what it holds and every later push, and starts
	// nothing.
	q.push(8, start)
	q.close()
	if _, ok := q.pop(); ok {
		t.Fatal("pop from a closed queue")
	}
	if !q.push(9, start) || starts != 3 || q.len() != 0 {
		t.Fatalf("push to a closed queue: starts %d, len %d", starts, q.len())
	}
}

// TestFifoBuffer: a drained queue keeps a small buffer (keptItemBytes) and
// the next burst reuses it without allocating, also the slice takeAll gave
// out once it is recycled; a large buffer is dropped; a queue that never
// drains (each pop followed by a push) does not grow its buffer.
func TestFifoBuffer(t *testing.T) {
	q := newFifo[*int](100)
	start := func() {}
	v := new(int)
	q.push(v, start)
	q.pop()
	if allocs := testing.AllocsPerRun(100, func() {
		q.push(v, start)
		q.push(v, start)
		q.pop()
		q.pop()
		q.push(v, start)
		q.recycle(q.takeAll())
	}); allocs != 0 {
		t.Fatalf("a burst on a drained queue allocated %v times, want 0", allocs)
	}
	if len(q.items) != 0 || q.items == nil || q.items[:cap(q.items)][0] != nil {
		t.Fatalf("drained queue: %v (cap %d), want an empty, cleared buffer", q.items, cap(q.items))
	}
	for range 20 {
		q.push(v, start)
	}
	q.recycle(q.takeAll())
	if q.items != nil {
		t.Fatalf("kept a buffer of %d items, more than %d bytes", cap(q.items), keptItemBytes)
	}
	q.push(v, start)
	for range 1000 {
		q.push(v, start)
		q.pop()
	}
	if q.len() != 1 || cap(q.items) > 8 {
		t.Fatalf("a queue that never drained holds %d items in a buffer of %d", q.len(), cap(q.items))
	}
}

// countingConn counts the writes reaching a real socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// TestBatchConnCoalescesWrites checks that the frames of one batch reach
// the socket as one write, encoded as gws would and in order, that a
// large batch is written every batchFlushBytes, that what tryWrite left is
// written first, and that nothing is written after a close frame.
func TestBatchConnCoalescesWrites(t *testing.T) {
	client, server := tcpPair(t)
	cc := &countingConn{Conn: server}
	bc := &batchConn{Conn: cc}
	var want []byte
	var frames []outFrame
	for i := range 10 {
		f := outFrame{data: []byte{byte('a' + i)}, text: i%2 == 0}
		frames = append(frames, f)
		op := gws.OpcodeBinary
		if f.text {
			op = gws.OpcodeText
		}
		want = appendFrame(want, op, f.data)
	}
	// A push to a binary socket: its peerId field is appended as written,
	// as withPeerID would.
	push := outFrame{data: []byte("push"), peer: "bob"}
	frames = append(frames, push)
	want = appendFrame(want, gws.OpcodeBinary, withPeerID(push.data, push.peer))
	bc.pending = []byte("left-")
	want = append([]byte("left-"), want...)
	if err := bc.writeFrames(frames); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Fatalf("a batch of 11 frames took %d socket writes, want 1", n)
	}

	// A batch larger than batchFlushBytes is written as it grows. The
	// reader drains concurrently so the socket never blocks.
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	chunk := bytes.Repeat([]byte("z"), 1000)
	frames = frames[:0]
	for range 3 * batchFlushBytes / len(chunk) {
		frames = append(frames, outFrame{data: chunk})
		want = appendFrame(want, gws.OpcodeBinary, chunk)
	}
	if err := bc.writeFrames(frames); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load(); n < 1+3 {
		t.Fatalf("%d socket writes after a batch of %d bytes, want at least 3", n, 3*batchFlushBytes)
	}
	// A close frame (as gws writes it) ends the socket's frames.
	closeFrame := appendFrame(nil, gws.OpcodeCloseConnection, []byte{0x03, 0xe8})
	if _, err := bc.Write(closeFrame); err != nil {
		t.Fatal(err)
	}
	want = append(want, closeFrame...)
	if err := bc.writeFrames([]outFrame{{data: []byte("late")}}); !errors.Is(err, errSocketClosing) {
		t.Fatalf("a batch after the close frame: %v, want errSocketClosing", err)
	}
	_ = server.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, want %d (same order)", len(b), len(want))
	}
}
