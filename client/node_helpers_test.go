package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
)

// testNode is a real imnode started in-process on 127.0.0.1:0.
type testNode struct {
	n    *node.Node
	url  string
	once sync.Once
}

// stop shuts the node down (goaway to its clients first); idempotent.
func (tn *testNode) stop(t testing.TB) {
	tn.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tn.n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
}

// startNode starts a node with the development app and stops it in
// t.Cleanup (after the connections the test opened later).
func startNode(t testing.TB) *testNode {
	t.Helper()
	return startNodeWith(t, apps.Dev())
}

// startNodeWith starts a node serving the given apps.
func startNodeWith(t testing.TB, list ...apps.App) *testNode {
	t.Helper()
	n, err := node.New(node.Config{
		DataDir:       t.TempDir(),
		ClientAddr:    "127.0.0.1:0",
		AdminAddr:     "127.0.0.1:0",
		GossipAddr:    "127.0.0.1:0",
		TransportAddr: "127.0.0.1:0",
		LocalTimings:  true,
		Insecure:      true,
		Apps:          list,
		Shards:        16,
		Bootstrap:     true,
		ShutdownGrace: time.Second,
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{n: n, url: "ws://" + n.ClientAddr().String() + "/"}
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

var idSeq atomic.Int64

// uid returns a client id unique within the test binary run, so tests that
// share nothing never collide on unique conversations.
func uid(name string) string {
	return fmt.Sprintf("%s-%d", name, idSeq.Add(1))
}

// nodeConn dials the node with the dev app.
func (tn *testNode) conn(t testing.TB) *client.Conn {
	t.Helper()
	cfg := client.DefaultConfig(apps.DevAppID, tn.url)
	cfg.ReconnectBaseDelay = 10 * time.Millisecond
	cfg.ReconnectMaxDelay = 200 * time.Millisecond
	return dial(t, cfg)
}

// login dials a fresh connection and logs id in on it.
func (tn *testNode) login(t testing.TB, id string) *client.IMClient {
	t.Helper()
	return login(t, tn.conn(t), id, client.LoginOptions{})
}

// expectNo reports an event of type T that arrives within a short window;
// used only after a synchronization point that guarantees any such event
// would already be queued.
func drainEvents(cl *client.IMClient) []client.Event {
	var out []client.Event
	for {
		select {
		case ev, ok := <-cl.Events():
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
