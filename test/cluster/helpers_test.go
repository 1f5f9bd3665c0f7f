package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// eventTimeout bounds the wait for one push: a reconnect (1 s backoff) plus
// the SDK's 20 s request timeout would be the worst a user sees.
const eventTimeout = 20 * time.Second

var idSeq atomic.Int64

// uid returns a client id unique within the test binary run.
func uid(name string) string { return fmt.Sprintf("%s-%d-%d", name, os.Getpid(), idSeq.Add(1)) }

// testCtx is the per-test deadline for client calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// user is one logged-in client and everything it received.
type user struct {
	name string // the role in the test (Tom, Jerry, ...)
	id   string // the client id
	cl   *client.IMClient
	conn *client.Conn
	home *harness.Node // the node it connected to first
	in   *inbox
}

// inbox records every event of a session, so that a test can wait for an
// event without discarding the ones that arrive before it (pushes of
// different shards reach a gateway in no fixed order).
type inbox struct {
	mu     sync.Mutex
	events []client.Event
	taken  []bool
	signal chan struct{} // capacity 1: "something was appended"
}

func newInbox() *inbox { return &inbox{signal: make(chan struct{}, 1)} }

// add is LoginOptions.OnEvent: it runs on the client's read goroutine and
// never blocks.
func (in *inbox) add(ev client.Event) {
	in.mu.Lock()
	in.events = append(in.events, ev)
	in.taken = append(in.taken, false)
	in.mu.Unlock()
	select {
	case in.signal <- struct{}{}:
	default:
	}
}

// takeFirst marks and returns the oldest untaken event that match accepts.
func (in *inbox) takeFirst(match func(client.Event) bool) (client.Event, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, ev := range in.events {
		if !in.taken[i] && match(ev) {
			in.taken[i] = true
			return ev, true
		}
	}
	return nil, false
}

// all returns every event received so far.
func (in *inbox) all() []client.Event {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.events)
}

// describe summarizes the events received, for failure messages.
func (in *inbox) describe() string {
	var b strings.Builder
	for _, ev := range in.all() {
		switch e := ev.(type) {
		case client.MessageEvent:
			fmt.Fprintf(&b, "\n  message %s in %s from %s: %q", e.Message.ID, e.Message.ConversationID, e.Message.From, e.Message.Content)
		case client.MembershipEvent:
			fmt.Fprintf(&b, "\n  %s in %s members %v by %s", e.Kind, e.ConversationID, e.Members, e.By)
		default:
			fmt.Fprintf(&b, "\n  %T %+v", ev, ev)
		}
	}
	return b.String()
}

// take waits for an untaken event of type T that match accepts (nil: any).
func take[T client.Event](t *testing.T, u *user, what string, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(eventTimeout)
	defer deadline.Stop()
	for {
		ev, ok := u.in.takeFirst(func(ev client.Event) bool {
			e, ok := ev.(T)
			return ok && (match == nil || match(e))
		})
		if ok {
			return ev.(T)
		}
		select {
		case <-u.in.signal:
		case <-deadline.C:
			t.Fatalf("%s (%s, connected first to %s): no %s within %v; received:%s", u.name, u.id, u.home.ID(), what, eventTimeout, u.in.describe())
		}
	}
}

// connect logs a new client id for name in through home; see connectID.
func connect(t *testing.T, c *harness.Cluster, home, server *harness.Node, name string) *user {
	t.Helper()
	return connectID(t, c, home, server, name, uid(name))
}

// connectID dials home first and the other running nodes after it (the
// SDK's RTMServers list, failing over in order), with server as the REST
// base for the missed-notification replay, and logs id in.
func connectID(t *testing.T, c *harness.Cluster, home, server *harness.Node, name, id string) *user {
	t.Helper()
	cfg := client.DefaultConfig(apps.DevAppID, c.ClientURLs(home)...)
	cfg.AppKey = apps.DevAppKey
	cfg.Server = server.ServerURL()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("user", name)
	ctx := testCtx(t)
	conn, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, home.ID(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	u := &user{name: name, id: id, conn: conn, home: home, in: newInbox()}
	u.cl, err = conn.Login(ctx, u.id, client.LoginOptions{OnEvent: u.in.add})
	if err != nil {
		t.Fatalf("%s: login on %s: %v", name, home.ID(), err)
	}
	return u
}

// membership matches a membership event of kind in cid.
func membership(kind client.MembershipKind, cid string) func(client.MembershipEvent) bool {
	return func(e client.MembershipEvent) bool { return e.Kind == kind && e.ConversationID == cid }
}

// messageID matches the push of message id.
func messageID(id string) func(client.MessageEvent) bool {
	return func(e client.MessageEvent) bool { return e.Message.ID == id }
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func ids(users ...*user) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		out = append(out, u.id)
	}
	return out
}

// retryable reports an error the contract allows while the cluster
// changes: a temporary server error (4200-ish) or a request lost with the
// socket. Neither was acknowledged.
func retryable(err error) bool {
	if errors.Is(err, client.ErrConnectionLost) || errors.Is(err, client.ErrNotConnected) {
		return true
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, pe := range []*protocol.Error{protocol.ErrInternal, protocol.ErrConversationInternal, protocol.ErrConversationAPIFailed} {
		if ce.Code == pe.Code {
			return true
		}
	}
	return false
}

// sendRetrying sends text, retrying retryable failures until the deadline
// of the SDK's request timeout; it returns the acknowledged message and
// how many attempts failed.
func sendRetrying(ctx context.Context, t *testing.T, conv *client.Conversation, text string) (*client.Message, int) {
	t.Helper()
	deadline := time.Now().Add(client.DefaultRequestTimeout)
	for failed := 0; ; failed++ {
		m, err := conv.Send(ctx, client.NewText(text))
		if err == nil {
			return m, failed
		}
		if !retryable(err) || time.Now().After(deadline) {
			t.Fatalf("send %q: %v (after %d retryable failures)", text, err, failed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// resendRetrying sends msg (again, with the dt it had) until it is
// acknowledged, retrying retryable failures for up to 20 s.
func resendRetrying(ctx context.Context, t *testing.T, conv *client.Conversation, msg *client.OutgoingMessage) *client.Message {
	t.Helper()
	var stored *client.Message
	harness.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		m, err := conv.Send(ctx, msg)
		if err != nil {
			if !retryable(err) {
				t.Fatalf("resend: %v", err)
			}
			return err
		}
		stored = m
		return nil
	})
	return stored
}

// idsOf returns the ids of the messages whose content is content in u's
// history of cid.
func idsOf(ctx context.Context, t *testing.T, u *user, cid, content string) []string {
	t.Helper()
	var ids []string
	it := u.cl.Conversation(cid).MessageIterator(100)
	for {
		page, done, err := it.Next(ctx)
		mustNoErr(t, err)
		for _, m := range page {
			if m.Content == content {
				ids = append(ids, m.ID)
			}
		}
		if done {
			return ids
		}
	}
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
