package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestBenchRunAgainstNode runs a tiny benchmark against a real in-process
// node and checks the accounting: every sent message is acked and
// received, and the latency histograms saw them.
func TestBenchRunAgainstNode(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(node.Config{
		DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", TransportAddr: "127.0.0.1:0", LocalTimings: true, Insecure: true, Bootstrap: true,
		Apps: []apps.App{apps.Dev()}, Shards: 16, ShutdownGrace: time.Second, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	url := "ws://" + n.ClientAddr().String() + "/"
	for _, tc := range []struct {
		name string
		urls []string
	}{
		{"one url", []string{url}},
		// Two URLs of the same node (it serves the WebSocket on any path):
		// the connections and clients are spread over both.
		{"two urls", []string{url, url + "second"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := run(ctx, benchConfig{
				URLs: tc.urls, AppID: apps.DevAppID,
				Subprotocol: protocol.SubprotocolBinary, Clients: 6, Conns: 2, Rate: 20, Duration: 500 * time.Millisecond,
				Size: 64, Parallel: 4, Drain: 10 * time.Second, Logger: logger,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Acked == 0 || res.Acked != res.Sent || res.Received != res.Acked || len(res.Errors) != 0 {
				t.Fatalf("sent %d acked %d received %d errors %v", res.Sent, res.Acked, res.Received, res.Errors)
			}
			if res.SendToAck.Count != res.Acked || res.SendToReceive.Count != res.Received || res.SendToAck.P99Ms <= 0 {
				t.Fatalf("latencies = %+v / %+v", res.SendToAck, res.SendToReceive)
			}
			wantCross := 0
			if len(tc.urls) > 1 {
				wantCross = 3
			}
			if p := res.Placement; p.Pairs != 3 || p.CrossURLPairs != wantCross || len(p.ConnsPerURL) != len(tc.urls) ||
				res.MisplacedConns != 0 {
				t.Fatalf("placement = %+v, misplaced %d", p, res.MisplacedConns)
			}
		})
	}
}
