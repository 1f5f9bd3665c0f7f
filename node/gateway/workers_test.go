package gateway

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestWorkersBoundedAndRetired: the gateway keeps at most Config.Workers
// warm goroutines for its sockets' work. With more sockets busy at once
// than that (each socket's worker blocked writing its answer), the extra
// ones run on goroutines of their own and nothing waits for a warm worker:
// every socket gets its answer once the writes can proceed. Warm workers
// idle for WorkerIdle exit; Shutdown stops every goroutine (goleak checks
// the package at its end).
func TestWorkersBoundedAndRetired(t *testing.T) {
	const workers, sockets = 2, 5
	g, _, url := startGatewayWith(t, func(c *Config) {
		c.Workers = workers
		c.WorkerIdle = 50 * time.Millisecond
	})
	clients := make([]*testClient, sockets)
	conns := make([]*conn, sockets)
	for i := range clients {
		id := fmt.Sprintf("c%d", i)
		clients[i] = dialTest(t, url, id)
		ss := g.reg.sessions(apps.DevAppID, id)
		if len(ss) != 1 {
			t.Fatalf("%s has %d sessions, want 1", id, len(ss))
		}
		conns[i] = ss[0].conn
	}
	// Hold every socket's write lock: each worker blocks writing its
	// answer, holding its goroutine.
	for _, c := range conns {
		c.bc.mu.Lock()
	}
	held := true
	release := func() {
		if held {
			held = false
			for _, c := range conns {
				c.bc.mu.Unlock()
			}
		}
	}
	defer release()
	for _, c := range clients {
		c.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(7)})
	}
	// Every socket's worker has taken its command (and blocks on the write).
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range conns {
		for c.in.len() > 0 || !c.workerRunning() {
			if time.Now().After(deadline) {
				t.Fatal("a socket's worker did not take its command within 10s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := g.pool.Workers(); n != workers {
		t.Fatalf("%d warm workers with %d sockets busy, want the bound %d", n, sockets, workers)
	}
	release()
	for i, c := range clients {
		if r := c.next(func(r *pb.GenericCommand) bool { return r.GetI() == 7 }); r.GetCmd() != pb.CommandType_echo {
			t.Fatalf("socket %d: echo answered with %v", i, r)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for g.pool.Workers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d warm workers still running 10s after the last work", g.pool.Workers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// workerRunning reports whether the socket's worker runs (its inbound
// queue has a consumer).
func (c *conn) workerRunning() bool {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	return c.in.running
}

// writerRunning reports whether the socket's out queue has a consumer.
func (c *conn) writerRunning() bool {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.running
}
