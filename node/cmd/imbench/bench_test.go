package main

import (
	"context"
	"log/slog"
	"os"
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
		name  string
		shape string
		urls  []string
	}{
		{"pairs one url", shapePairs, []string{url}},
		// Two URLs of the same node (it serves the WebSocket on any path):
		// the connections and clients are spread over both.
		{"pairs two urls", shapePairs, []string{url, url + "second"}},
		{"room", shapeRoom, []string{url}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := run(ctx, benchConfig{
				URLs: tc.urls, Protocol: protoLeanCloud, Shape: tc.shape, AppID: apps.DevAppID,
				Subprotocol: protocol.SubprotocolBinary, Clients: 6, Conns: 2, Rates: []float64{20, 40},
				Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond, Size: 64, Parallel: 4, Drain: 10 * time.Second,
				// An SLO every step meets, however loaded the machine
				// (skipped send ticks, slow pushes): this test checks
				// the accounting; TestSLOCheck tests the SLO itself.
				SLO: slo{MinAcked: 0, MaxP99: time.Hour}, PIDs: []int{os.Getpid()}, Logger: logger,
			})
			if err != nil {
				t.Fatal(err)
			}
			wantReceivers, wantSenders := 1, 6
			if tc.shape == shapeRoom {
				wantReceivers, wantSenders = 5, 1
			}
			if res.Receivers != wantReceivers || len(res.Steps) != 2 || res.Best != 1 {
				t.Fatalf("receivers %d, steps %d, best %d: %+v", res.Receivers, len(res.Steps), res.Best, res.Steps)
			}
			for i, s := range res.Steps {
				if s.Acked == 0 || s.Acked != s.Sent || s.Received != s.Acked*uint64(wantReceivers) || len(s.Errors) != 0 ||
					s.ExpectedReceived != s.Received || !s.MeetsSLO {
					t.Fatalf("step %d: sent %d acked %d received %d of %d errors %v slo %v %s", i, s.Sent, s.Acked, s.Received,
						s.ExpectedReceived, s.Errors, s.MeetsSLO, s.Miss)
				}
				if s.SendToAck.Count != s.Acked || s.SendToReceive.Count != s.Received || s.SendToAck.P99Ms <= 0 {
					t.Fatalf("step %d: latencies = %+v / %+v", i, s.SendToAck, s.SendToReceive)
				}
				if s.OfferedPerSecond != s.RatePerClient*float64(wantSenders) || s.ServerCPUSeconds < 0 {
					t.Fatalf("step %d: offered %v at rate %v, server cpu %v", i, s.OfferedPerSecond, s.RatePerClient, s.ServerCPUSeconds)
				}
			}
			// CPU time comes in 10 ms ticks: a short step on a starved
			// machine may see none, the two steps together do.
			if cpu := res.Steps[0].ServerCPUSeconds + res.Steps[1].ServerCPUSeconds; cpu <= 0 {
				t.Fatalf("server cpu over both steps %v", cpu)
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
	t.Run("idle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := run(ctx, benchConfig{
			URLs: []string{url}, Protocol: protoLeanCloud, Shape: shapeIdle, AppID: apps.DevAppID,
			Subprotocol: protocol.SubprotocolBinary, Clients: 50, Conns: 50, Duration: time.Second, Parallel: 8,
			PIDs: []int{os.Getpid()}, Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		if i := res.Idle; i == nil || i.Sockets != 50 || i.RSSBeforeKiB <= 0 || i.RSSAfterKiB <= 0 || len(res.Steps) != 0 {
			t.Fatalf("idle = %+v, steps %d", res.Idle, len(res.Steps))
		}
	})
}

// TestSLOCheck checks each condition of the SLO on its own.
func TestSLOCheck(t *testing.T) {
	s := slo{MinAcked: 0.99, MaxP99: 100 * time.Millisecond}
	good := stepResult{OfferedPerSecond: 1000, OfferedMessages: 10000, Acked: 9900, AckedPerSecond: 985,
		Received: 9950, ExpectedReceived: 10000, SendToReceive: latency{P99Ms: 100}}
	if ok, miss := s.check(good); !ok {
		t.Fatalf("good step missed: %s", miss)
	}
	for name, mod := range map[string]func(*stepResult){
		"few acked":    func(r *stepResult) { r.Acked = 9899 },
		"few received": func(r *stepResult) { r.Received = 9800 },
		"slow p99":     func(r *stepResult) { r.SendToReceive.P99Ms = 100.5 },
	} {
		r := good
		mod(&r)
		if ok, miss := s.check(r); ok || miss == "" {
			t.Errorf("%s: met the SLO (miss %q)", name, miss)
		}
	}
}

// TestContentRoundTrip checks that the step and send time survive the
// message content, padded to the size.
func TestContentRoundTrip(t *testing.T) {
	b := &bench{cfg: benchConfig{Size: 100}}
	now := time.Unix(1700000000, 123456789)
	c := b.content(7, now)
	if len(c) != 100 {
		t.Fatalf("content is %d bytes", len(c))
	}
	step, sent, ok := parseContent(c)
	if !ok || step != 7 || !sent.Equal(now) {
		t.Fatalf("parseContent(%q) = %d %v %v", c, step, sent, ok)
	}
	for _, bad := range []string{"hello", "imbench:x:1:", "imbench:1:x:", "imbench:1"} {
		if _, _, ok := parseContent(bad); ok {
			t.Errorf("parseContent(%q) ok", bad)
		}
	}
}

// TestProcStat reads this process's CPU time and resident memory.
func TestProcStat(t *testing.T) {
	cpu, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, err := procRSS(os.Getpid())
	if err != nil || rss <= 0 || cpu < 0 {
		t.Fatalf("cpu %v rss %v err %v", cpu, rss, err)
	}
	// Blocking (here in short sleeps) switches a thread out; poll until
	// the count moves.
	cs0, err := procCtxSwitches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		time.Sleep(time.Millisecond)
		cs1, err := procCtxSwitches(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if cs1 > cs0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("context switches stayed at %d", cs0)
		}
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("cpu of a missing process")
	}
}
