package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/test/harness"
)

// gatedDialer fails the first n dials, each only once release is closed,
// so that frames can be queued to a new peer while its first dial is in
// progress; later dials use a net.Dialer.
type gatedDialer struct {
	release chan struct{}
	mu      sync.Mutex
	fail    int
}

func newGatedDialer(fail int) *gatedDialer {
	return &gatedDialer{release: make(chan struct{}), fail: fail}
}

func (d *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	fail := d.fail > 0
	if fail {
		d.fail--
	}
	d.mu.Unlock()
	if !fail {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	select {
	case <-d.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return nil, errors.New("connection refused (test)")
}

// messageLog records the payloads of the messages a node receives.
type messageLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *messageLog) handler() Handler {
	return HandlerFuncs{Message: func(m *Message) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs = append(l.msgs, string(m.Payload))
	}}
}

func (l *messageLog) waitFor(tb testing.TB, want []string) {
	tb.Helper()
	harness.CheckFor(tb, 5*time.Second, 5*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.msgs) < len(want) {
			return fmt.Errorf("%d of %d messages: %q", len(l.msgs), len(want), l.msgs)
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Equal(l.msgs, want) {
		tb.Fatalf("messages = %q, want %q (all, in order)", l.msgs, want)
	}
}

// TestTransportMessagesSurviveFailedFirstDial: messages Send accepted
// while the first dial to a new peer was in progress, and that dial
// failed, are written once a redial succeeds, before later ones.
func TestTransportMessagesSurviveFailedFirstDial(t *testing.T) {
	book := newAddrBook()
	var got messageLog
	startNode(t, book, "b", got.handler(), nil)
	d := newGatedDialer(1)
	a := startNode(t, book, "a", nil, func(c *Config) { c.Dial = d.dial })

	var want []string
	for i := range 3 {
		m := fmt.Sprintf("m%d", i)
		if err := a.Send("b", 9, []byte(m)); err != nil {
			t.Fatalf("Send while dialing: %v", err)
		}
		want = append(want, m)
	}
	close(d.release) // the first dial fails now
	got.waitFor(t, want)
	// The failed dial put the peer in backoff; sends then either failed
	// at once (visible) or were queued behind the held ones.
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if err := a.Send("b", 9, []byte("after")); err != nil {
			return err
		}
		return nil
	})
	got.waitFor(t, append(want, "after"))
	if st := a.Stats(); st.DialErrors != 1 || st.MessagesHeld != 3 || st.MessagesDropped != 0 {
		t.Fatalf("stats = %+v, want 1 dial error, 3 messages held, none dropped", st)
	}
}

// TestTransportMessagesToUnreachablePeerAreCounted: messages held for a
// peer that stays unreachable past MessageHold are dropped and counted by
// reason, and Send meanwhile fails with ErrUnavailable.
func TestTransportMessagesToUnreachablePeerAreCounted(t *testing.T) {
	book := newAddrBook()
	book.set("b", "127.0.0.1:1") // never dialed: the dialer refuses
	d := newGatedDialer(1 << 30)
	reg := prometheus.NewRegistry()
	a := startNode(t, book, "a", nil, func(c *Config) {
		c.Dial = d.dial
		c.MessageHold = 50 * time.Millisecond
		c.Registerer = reg
	})
	for i := range 3 {
		if err := a.Send("b", 9, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("Send while dialing: %v", err)
		}
	}
	close(d.release)
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := a.Stats(); st.MessagesDropped != 3 {
			return fmt.Errorf("stats = %+v, want 3 messages dropped", st)
		}
		return nil
	})
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if err := a.Send("b", 9, nil); !errors.Is(err, ErrUnavailable) {
			return fmt.Errorf("Send to a peer in backoff = %v, want ErrUnavailable", err)
		}
		return nil
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() != "imnode_transport_messages_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			if m.GetLabel()[0].GetValue() == dropUnreachable && m.GetCounter().GetValue() < 3 {
				t.Fatalf("dropped{reason=unreachable} = %v, want >= 3", m.GetCounter().GetValue())
			}
		}
	}
	if series != 3 {
		t.Fatalf("imnode_transport_messages_dropped_total has %d series, want one per reason", series)
	}
}

// TestTransportMessagesDroppedOnCloseAreCounted: messages still held when
// the peer is closed are counted as dropped, reason closed.
func TestTransportMessagesDroppedOnCloseAreCounted(t *testing.T) {
	book := newAddrBook()
	book.set("b", "127.0.0.1:1")
	d := newGatedDialer(1 << 30)
	a := startNode(t, book, "a", nil, func(c *Config) { c.Dial = d.dial; c.MessageHold = time.Hour })
	for i := range 2 {
		if err := a.Send("b", 9, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	close(d.release)
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := a.Stats(); st.MessagesHeld != 2 {
			return fmt.Errorf("stats = %+v, want 2 messages held", st)
		}
		return nil
	})
	a.ClosePeer("b")
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := a.Stats(); st.MessagesDropped != 2 || a.stats.dropped.closed.Load() != 2 {
			return fmt.Errorf("stats = %+v, want 2 messages dropped on close", st)
		}
		return nil
	})
}
