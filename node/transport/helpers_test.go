package transport

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

// addrBook is a mutable Resolver for tests.
type addrBook struct {
	mu    sync.Mutex
	addrs map[string]string
}

func newAddrBook() *addrBook { return &addrBook{addrs: map[string]string{}} }

func (a *addrBook) set(id, addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addrs[id] = addr
}

func (a *addrBook) resolve(id string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if addr, ok := a.addrs[id]; ok {
		return addr, nil
	}
	return "", fmt.Errorf("unknown node %q", id)
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNode starts a transport named id that registers in book; mod may
// adjust its config. It is shut down in Cleanup.
func startNode(tb testing.TB, book *addrBook, id string, h Handler, mod func(*Config)) *Transport {
	tb.Helper()
	cfg := DefaultLocalConfig()
	cfg.NodeID = id
	cfg.Resolve = book.resolve
	cfg.Handler = h
	cfg.Logger = testLogger(tb)
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.Shutdown)
	if tr.Addr() != nil {
		book.set(id, tr.Addr().String())
	}
	return tr
}

// echo answers every request with its payload prefixed by the node id.
func echo(id string) Handler {
	return HandlerFuncs{Request: func(_ context.Context, req *Request) ([]byte, error) {
		return append([]byte(id+":"), req.Payload...), nil
	}}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
