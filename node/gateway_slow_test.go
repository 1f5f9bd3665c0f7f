package node_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
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
		if sent%100 == 99 && slowDisconnects(t, n) > 0 {
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

// slowDisconnects reads imnode_gateway_slow_disconnects_total from the
// node's metrics.
func slowDisconnects(t *testing.T, n *node.Node) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr().String() + "/metrics") //nolint:noctx // a test against loopback
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "imnode_gateway_slow_disconnects_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no imnode_gateway_slow_disconnects_total in /metrics")
	return 0
}
