package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/test/harness"
)

// reasonError is an Authorize refusal naming its reason.
type reasonError string

func (e reasonError) Error() string         { return "refused: " + string(e) }
func (e reasonError) RefusalReason() string { return string(e) }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// counterValue returns the value of the series of name with labels.
func counterValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestTransportRefusalsCountedAndLoggedOncePerPeer: every message and
// request Authorize refuses is counted by kind and reason, and each
// refused peer is logged once per interval, not once per frame.
func TestTransportRefusalsCountedAndLoggedOncePerPeer(t *testing.T) {
	book := newAddrBook()
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	var msgs int
	var mu sync.Mutex
	h := HandlerFuncs{Message: func(*Message) { mu.Lock(); msgs++; mu.Unlock() },
		Request: func(context.Context, *Request) ([]byte, error) { return nil, nil }}
	startNode(t, book, "b", h, func(c *Config) {
		c.Registerer = reg
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Authorize = func(id string) error {
			switch id {
			case "x":
				return reasonError("unknown")
			case "y":
				return errors.New("no reason")
			}
			return nil
		}
	})
	x := startNode(t, book, "x", nil, nil)
	y := startNode(t, book, "y", nil, nil)
	const n = 20
	for i := range n {
		if err := x.Send("b", 2, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := y.Send("b", 2, nil); err != nil {
		t.Fatal(err)
	}
	// Each call travels behind its sender's messages on the same
	// connection, so they were judged by the time it is answered.
	for _, c := range []*Transport{x, y} {
		if _, err := c.Call(context.Background(), "b", 1, nil); !IsRetryable(err) {
			t.Fatalf("call from a refused peer = %v, want a retryable refusal", err)
		}
	}
	const name = "imnode_transport_peer_refusals_total"
	for _, tt := range []struct {
		kind, reason string
		want         float64
	}{
		{kindMessage, "unknown", n}, {kindRequest, "unknown", 1},
		{kindMessage, "refused", 1}, {kindRequest, "refused", 1},
	} {
		if got := counterValue(t, reg, name, map[string]string{"kind": tt.kind, "reason": tt.reason}); got != tt.want {
			t.Errorf("%s{kind=%s,reason=%s} = %v, want %v", name, tt.kind, tt.reason, got, tt.want)
		}
	}
	mu.Lock()
	if msgs != 0 {
		t.Errorf("%d refused messages were handled", msgs)
	}
	mu.Unlock()
	harness.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		out := logs.String()
		if c := strings.Count(out, "peer=x"); c != 1 || strings.Count(out, "peer=y") != 1 {
			return fmt.Errorf("refusal log lines: x %d, y %d, want 1 each:\n%s", c, strings.Count(out, "peer=y"), out)
		}
		return nil
	})
}
