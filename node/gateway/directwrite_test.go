package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestTryWriteKeepsWhatTheSocketDidNotTake fills a real loopback socket
// whose peer does not read: tryWrite never blocks, the frame the socket
// takes only in part is kept and written first once the peer reads, and
// nothing after it is written directly meanwhile, so the peer receives
// every accepted frame whole and in order.
func TestTryWriteKeepsWhatTheSocketDidNotTake(t *testing.T) {
	peer, server := tcpPair(t)
	_ = server.(*net.TCPConn).SetWriteBuffer(4 << 10)
	_ = peer.(*net.TCPConn).SetReadBuffer(4 << 10)
	bc := newBatchConn(server)
	if bc.raw == nil {
		t.Fatal("a TCP connection has no raw descriptor")
	}

	// Frames until one is taken in part; the next must not be written.
	var want bytes.Buffer
	payload := bytes.Repeat([]byte("x"), 1000)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		payload[0] = byte(i)
		frame := appendFrame(nil, gws.OpcodeBinary, payload)
		left, err := bc.tryWrite(frame)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		want.Write(frame)
		if left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the socket never filled")
		}
	}
	if _, err := bc.tryWrite(appendFrame(nil, gws.OpcodeBinary, payload)); !errors.Is(err, errNoDirectWrite) {
		t.Fatalf("a frame after a partial one: %v, want errNoDirectWrite", err)
	}
	if !bc.hasPending() {
		t.Fatal("nothing pending after a partial write")
	}

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(want.Len())))
		got <- b
	}()
	_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := bc.flushPending(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("the peer received %d bytes that differ from the %d accepted", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not receive the accepted frames")
	}
	if bc.hasPending() {
		t.Fatal("still pending after flushPending")
	}
}

// TestTryWriteStopsAfterCloseFrame checks that once gws wrote a close
// frame no push is written directly after it (RFC 6455: nothing follows a
// close frame); the frame goes to the writer, which gws then refuses.
func TestTryWriteStopsAfterCloseFrame(t *testing.T) {
	_, server := tcpPair(t)
	bc := newBatchConn(server)
	if _, err := bc.tryWrite(appendFrame(nil, gws.OpcodeBinary, []byte("before"))); err != nil {
		t.Fatalf("a push before the close frame: %v", err)
	}
	if _, err := bc.Write(appendFrame(nil, gws.OpcodeCloseConnection, []byte{0x03, 0xe8})); err != nil {
		t.Fatal(err)
	}
	if _, err := bc.tryWrite(appendFrame(nil, gws.OpcodeBinary, []byte("after"))); !errors.Is(err, errNoDirectWrite) {
		t.Fatalf("a push after the close frame: %v, want errNoDirectWrite", err)
	}
}

// TestPushToIdleSocketIsWrittenDirectly: after a real handshake (its HTTP
// response is written through the batchConn too, and starts with 'H',
// whose low bits read as the close opcode), a push to a logged-in socket
// with nothing queued is written by the delivering goroutine before
// Deliver returns: no frame is left queued and no writer runs.
func TestPushToIdleSocketIsWrittenDirectly(t *testing.T) {
	g, _, url := startGateway(t, 0)
	bob := dialTest(t, url, "bob")
	sessions := g.reg.sessions(apps.DevAppID, "bob")
	if len(sessions) != 1 {
		t.Fatalf("bob has %d sessions, want 1", len(sessions))
	}
	c := sessions[0].conn
	c.bc.mu.Lock()
	closing := c.bc.closing
	c.bc.mu.Unlock()
	if closing {
		t.Fatal("the socket counts as closing after its handshake: no push can be written directly")
	}
	// The login's worker may still be ending its turn (the client can read
	// the answer before the worker gives up the writer's place).
	deadline := time.Now().Add(10 * time.Second)
	for c.in.len() > 0 || c.workerRunning() || c.out.len() > 0 || c.writerRunning() {
		if time.Now().After(deadline) {
			t.Fatal("the socket did not become idle after its login")
		}
		time.Sleep(time.Millisecond)
	}
	push := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Msg: proto.String("hi")}}
	for i := range 10 {
		g.Deliver(apps.DevAppID, []string{"bob"}, 0, push)
		c.out.mu.Lock()
		queued, writer := len(c.out.items)-c.out.head, c.out.running
		c.out.mu.Unlock()
		if queued != 0 || writer {
			t.Fatalf("push %d: %d frames queued, writer running %v; want it written by Deliver", i, queued, writer)
		}
		r := bob.next(func(r *pb.GenericCommand) bool { return r.GetCmd() == pb.CommandType_direct })
		if r.GetPeerId() != "bob" || r.GetDirectMessage().GetMsg() != "hi" {
			t.Fatalf("push %d arrived as %v, want peerId bob and msg hi", i, r)
		}
	}
}
