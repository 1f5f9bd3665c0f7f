package gateway

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// TestFifoBoundAndOrder checks the queue's bound, its order, its wake-up
// signal and that an emptied queue holds no buffer.
func TestFifoBoundAndOrder(t *testing.T) {
	q := newFifo[int](3)
	for i := range 3 {
		if !q.push(i) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if q.push(3) {
		t.Fatal("push beyond the limit accepted")
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no wake-up after a push")
	}
	if v, ok := q.pop(); !ok || v != 0 {
		t.Fatalf("pop = %d %v", v, ok)
	}
	if !q.push(3) {
		t.Fatal("push refused after a pop made room")
	}
	if got := q.takeAll(); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("takeAll = %v", got)
	}
	if q.items != nil || q.len() != 0 {
		t.Fatalf("emptied queue holds %v", q.items)
	}
	q.push(7)
	if v, ok := q.pop(); !ok || v != 7 || q.items != nil {
		t.Fatalf("pop = %d %v, left %v", v, ok, q.items)
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
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

// TestBatchConnCoalescesWrites checks that corked writes reach the socket
// as one write (and uncorked ones one each), in order and intact, that a
// large batch is written every corkFlushBytes, and that Close writes what
// is buffered before closing.
func TestBatchConnCoalescesWrites(t *testing.T) {
	client, server := tcpPair(t)
	cc := &countingConn{Conn: server}
	bc := &batchConn{Conn: cc}
	var want bytes.Buffer
	write := func(s string) {
		if _, err := bc.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		want.WriteString(s)
	}

	bc.cork()
	for i := range 10 {
		write(string(rune('a' + i)))
	}
	if n := cc.writes.Load(); n != 0 {
		t.Fatalf("%d socket writes while corked", n)
	}
	if err := bc.uncork(); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Fatalf("10 corked frames took %d socket writes, want 1", n)
	}
	write("x")
	write("y")
	if n := cc.writes.Load(); n != 3 {
		t.Fatalf("2 uncorked writes: %d socket writes in total, want 3", n)
	}

	// A batch larger than corkFlushBytes is written as it grows. The reader
	// drains concurrently so the socket never blocks.
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	bc.cork()
	chunk := bytes.Repeat([]byte("z"), 1000)
	for range 3 * corkFlushBytes / len(chunk) {
		write(string(chunk))
	}
	if n := cc.writes.Load(); n < 3+2 {
		t.Fatalf("%d socket writes after %d corked bytes, want at least 2 intermediate flushes", n, 3*corkFlushBytes)
	}
	// Close while corked (a close frame written during a batch) writes the
	// rest first.
	write("close-frame")
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (same order)", len(b), want.Len())
	}
}
