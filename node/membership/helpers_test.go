package membership

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// convergeTimeout is generous: gossip on a loaded 2-core machine under
// -race is slow, and polling returns as soon as the condition holds.
const convergeTimeout = 20 * time.Second

// testLogger logs to the test's output until the test ends. memberlist
// finishes in-flight probes after Shutdown returns and may log then, so
// the writer stops forwarding at cleanup instead of panicking.
func testLogger(tb testing.TB) *slog.Logger {
	w := &testWriter{w: tb.Output()}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// startNode starts a member with DefaultLocalConfig; it is shut down in
// Cleanup (a second Shutdown is harmless).
func startNode(tb testing.TB, id string, st ring.State, seeds ...string) *Membership {
	tb.Helper()
	return startNodeWith(tb, id, st, func(*Config) {}, seeds...)
}

// startNodeWith is startNode with mod applied to the config last.
func startNodeWith(tb testing.TB, id string, st ring.State, mod func(*Config), seeds ...string) *Membership {
	tb.Helper()
	cfg := DefaultLocalConfig()
	cfg.NodeID = id
	cfg.State = st
	cfg.PeerAddr = "127.0.0.1:7" + id[len(id)-1:]
	cfg.ClientAddr = "127.0.0.1:8" + id[len(id)-1:]
	cfg.AdminAddr = "127.0.0.1:9" + id[len(id)-1:]
	cfg.Version = "test"
	cfg.Seeds = seeds
	cfg.Logger = testLogger(tb).With(keyNode, id)
	mod(&cfg)
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// startCluster starts n members joined through the first one.
func startCluster(tb testing.TB, n int) []*Membership {
	tb.Helper()
	ms := []*Membership{startNode(tb, "imnode-0", ring.StateActive)}
	for i := 1; i < n; i++ {
		ms = append(ms, startNode(tb, fmt.Sprintf("imnode-%d", i), ring.StateActive, ms[0].Addr()))
	}
	waitConverged(tb, ms, n, n)
	return ms
}

// waitConverged waits until every member in ms sees the same epoch and
// roster, with wantMembers members of which wantLive are live.
func waitConverged(tb testing.TB, ms []*Membership, wantMembers, wantLive int) *Snapshot {
	tb.Helper()
	return waitConvergedTo(tb, ms, wantMembers, wantLive, func(*Snapshot) error { return nil })
}

// waitConvergedTo is waitConverged plus a condition on the common snapshot.
func waitConvergedTo(tb testing.TB, ms []*Membership, wantMembers, wantLive int, cond func(*Snapshot) error) *Snapshot {
	tb.Helper()
	var s0 *Snapshot
	harness.CheckFor(tb, convergeTimeout, 10*time.Millisecond, func() error {
		s0 = ms[0].Snapshot()
		if err := cond(s0); err != nil {
			return err
		}
		for _, m := range ms {
			s := m.Snapshot()
			live := 0
			for _, mm := range s.Members {
				if mm.Live {
					live++
				}
			}
			if len(s.Members) != wantMembers || live != wantLive {
				return fmt.Errorf("%s sees %d members, %d live; want %d, %d", s.Self, len(s.Members), live, wantMembers, wantLive)
			}
			if s.Epoch != s0.Epoch || !sameRoster(s, s0) {
				return fmt.Errorf("%s epoch %d roster %v, %s epoch %d roster %v", s.Self, s.Epoch, s.Roster(), s0.Self, s0.Epoch, s0.Roster())
			}
		}
		return nil
	})
	return s0
}

func sameRoster(a, b *Snapshot) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		x, y := a.Members[i], b.Members[i]
		if x.ID != y.ID || x.State != y.State || x.Seq != y.Seq {
			return false
		}
	}
	return true
}

// memberIs returns a condition: node id has state st and the epoch is
// epoch.
func memberIs(id string, st ring.State, epoch uint64) func(*Snapshot) error {
	return func(s *Snapshot) error {
		m, _ := s.Member(id)
		if m.State != st || s.Epoch != epoch {
			return fmt.Errorf("%s sees %s %v epoch %d, want %v epoch %d", s.Self, id, m.State, s.Epoch, st, epoch)
		}
		return nil
	}
}
