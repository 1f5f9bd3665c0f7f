package node_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestNodeSlowConsumerIsDisconnected: a client that stops reading its socket
// while its partner keeps sending is disconnected as a slow consumer once its
// outbound queue is full (imnode_gateway_slow_disconnects_total), and the
// sender goes on unaffected.
func TestNodeSlowConsumerIsDisconnected(t *testing.T) {
	n := startNode(t, nil)
	slow := dialRaw(t, n, protocol.SubprotocolBinary)
	// A small receive buffer, so that the kernel holds few of the pushes.
	if tc, ok := slow.ws.NetConn().(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	login(t, slow, 1, "slow", nil)
	// From now on nothing reads slow.frames: after 64 frames its read loop
	// blocks, the socket's buffers fill and the node's writer blocks. At
	// the end the frames are drained so that the read loop ends.
	t.Cleanup(func() {
		_ = slow.ws.NetConn().Close()
		for {
			select {
			case <-slow.frames:
			case err := <-slow.closed:
				t.Logf("slow client's socket ended: %v", err)
				return
			case <-time.After(10 * time.Second):
				t.Error("the slow client's read loop did not end")
				return
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cc := client.DefaultConfig(apps.DevAppID, "ws://"+n.ClientAddr().String()+"/")
	conn, err := client.Dial(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	fast, err := conn.Login(ctx, "fast", client.LoginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := fast.CreateConversation(ctx, client.CreateOptions{Members: []string{"slow"}, Unique: true})
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat("x", 4000)
	deadline := time.Now().Add(60 * time.Second)
	for sent := 0; ; sent++ {
		if _, err := conv.Send(ctx, client.NewRaw(content)); err != nil {
			t.Fatalf("send %d: %v", sent, err)
		}
		if sent%100 == 99 && metric(t, n, "imnode_gateway_slow_disconnects_total") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slow-consumer disconnect after %d messages", sent+1)
		}
	}
	// The sender is unaffected.
	if _, err := conv.Send(ctx, client.NewRaw("after")); err != nil {
		t.Fatalf("send after the disconnect: %v", err)
	}
}

// TestNodeFloodingClientIsDisconnected: a client that writes commands much
// faster than the node runs them (one at a time per socket, each send a
// durable commit) is disconnected once more than the inbound queue's 256
// wait, and counted in imnode_gateway_flood_disconnects_total.
func TestNodeFloodingClientIsDisconnected(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	login(t, c, 1, "flood", nil)
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(2),
		ConvMessage: &pb.ConvCommand{M: []string{"other"}}})
	cid := c.recvResponse(2).GetConvMessage().GetCid()
	// The answers are not read while writing: a goroutine discards them so
	// that the read loop sees the close.
	closed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-c.frames:
			case err := <-c.closed:
				closed <- err
				return
			}
		}
	}()
	for i := range 2000 {
		data, _, err := protocol.Encode(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(int32(10 + i)),
			DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("flood")}}, c.sub)
		if err != nil {
			t.Fatal(err)
		}
		if c.ws.WriteMessage(gws.OpcodeBinary, data) != nil {
			break // closed by the node
		}
	}
	// The node sends close code 1008, but it closes a socket with unread
	// commands in its receive buffer, which resets the connection: the
	// client may see the reset instead of the close frame.
	select {
	case err := <-closed:
		var ce *gws.CloseError
		if errors.As(err, &ce) && ce.Code != 1008 {
			t.Fatalf("closed with %v, want close code 1008", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the flooding socket was not closed within 60s")
	}
	if got := metric(t, n, "imnode_gateway_flood_disconnects_total"); got != 1 {
		t.Fatalf("flood disconnects = %v, want 1", got)
	}
}
