package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkFor polls f until it returns nil or the deadline passes.
func checkFor(t testing.TB, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}

// waitEvent reads events until one satisfies match, failing after 10 s.
func waitEvent[T client.Event](t testing.TB, cl *client.IMClient, match func(T) bool) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-cl.Events():
			if !ok {
				var zero T
				t.Fatalf("%s: event channel closed while waiting for %T", cl.ID(), zero)
			}
			if e, ok := ev.(T); ok && (match == nil || match(e)) {
				return e
			}
		case <-timer.C:
			var zero T
			t.Fatalf("%s: no %T within 10s", cl.ID(), zero)
		}
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastConfig shrinks the reconnect backoff so that tests run in
// milliseconds; the schedule shape (base * 2^k) is unchanged.
func fastConfig(urls ...string) client.Config {
	cfg := client.DefaultConfig("app", urls...)
	cfg.ReconnectBaseDelay = 10 * time.Millisecond
	cfg.ReconnectMaxDelay = 100 * time.Millisecond
	return cfg
}

func dial(t testing.TB, cfg client.Config) *client.Conn {
	t.Helper()
	c, err := client.Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func login(t testing.TB, c *client.Conn, id string, opts client.LoginOptions) *client.IMClient {
	t.Helper()
	cl, err := c.Login(testCtx(t), id, opts)
	if err != nil {
		t.Fatalf("login %q: %v", id, err)
	}
	return cl
}

func TestClientTransportSubprotocols(t *testing.T) {
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolBase64} {
		t.Run(sub, func(t *testing.T) {
			fs := startFakeServer(t)
			cfg := fastConfig(fs.url)
			cfg.Subprotocol = sub
			c := dial(t, cfg)
			if c.Subprotocol() != sub {
				t.Fatalf("subprotocol = %q", c.Subprotocol())
			}
			tom := login(t, c, "Tom", client.LoginOptions{Tag: "Mobile", DeviceID: "dev-1"})
			u := waitEvent[client.UnreadEvent](t, tom, nil)
			if len(u.Conversations) != 1 || u.Conversations[0].Count != 1 {
				t.Fatalf("unread = %+v", u)
			}
			open := fs.opens()[0]
			sm := open.GetSessionMessage()
			if open.GetAppId() != "app" || open.GetPeerId() != "Tom" || sm.GetR() || sm.GetTag() != "Mobile" ||
				sm.GetDeviceId() != "dev-1" || sm.GetConfigBitmap() != 187 || sm.LastPatchTime == nil || sm.St != nil {
				t.Fatalf("session/open = %v", open)
			}
			if st, _ := tom.SessionToken(); st == "" {
				t.Fatal("no session token kept")
			}
		})
	}
}

func TestClientTransportMultiSessionRouting(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	jerry := login(t, c, "Jerry", client.LoginOptions{})
	anon := login(t, c, "", client.LoginOptions{})
	if anon.ID() != "anon-1" {
		t.Fatalf("anonymous id = %q", anon.ID())
	}
	if _, err := c.Login(testCtx(t), "Tom", client.LoginOptions{}); err == nil {
		t.Fatal("second login of Tom on the same connection succeeded")
	}
	sent, err := tom.Conversation("c1").Send(testCtx(t), client.NewText("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if sent.ID == "" || sent.Timestamp.UnixMilli() != 1000 {
		t.Fatalf("sent = %+v", sent)
	}
	for _, cl := range []*client.IMClient{jerry, anon} {
		ev := waitEvent[client.MessageEvent](t, cl, nil)
		if ev.Message.From != "Tom" || ev.Message.ID != sent.ID {
			t.Fatalf("%s got %+v", cl.ID(), ev.Message)
		}
		tm, err := ev.Message.Typed()
		if err != nil || tm.Type != client.TypeText || tm.Text != "hi" {
			t.Fatalf("typed = %+v, %v", tm, err)
		}
	}
	// Both receivers acked automatically; the sender did not ack itself.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := fs.countFrames(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_ack }); n != 2 {
			return fmt.Errorf("acks = %d", n)
		}
		return nil
	})
	select {
	case ev := <-tom.Events():
		if _, ok := ev.(client.MessageEvent); ok {
			t.Fatal("sender received its own message")
		}
	default:
	}
}

// TestClientTransportNoAckInChatRooms: like the JS SDK, a receiver acks a
// conversation's messages but not a chat room's (convType 2).
func TestClientTransportNoAckInChatRooms(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	jerry := login(t, c, "Jerry", client.LoginOptions{})
	for _, cid := range []string{"room1", "c1"} {
		if _, err := tom.Conversation(cid).Send(testCtx(t), client.NewText("hi")); err != nil {
			t.Fatal(err)
		}
		if ev := waitEvent[client.MessageEvent](t, jerry, nil); ev.Message.ConversationID != cid {
			t.Fatalf("Jerry got %+v, want a message of %s", ev.Message, cid)
		}
	}
	// Both were received before the batched acks went out: the batch acks c1 only.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := fs.countFrames(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_ack }); n != 1 {
			return fmt.Errorf("acks = %d", n)
		}
		return nil
	})
	if n := fs.countFrames(func(f *pb.GenericCommand) bool {
		return f.GetCmd() == pb.CommandType_ack && f.GetAckMessage().GetCid() == "room1"
	}); n != 0 {
		t.Fatalf("%d acks of the chat room", n)
	}
}

func TestClientTransportRequestTimeout(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tom.Conversation("c1").Send(ctx, client.NewRaw("hang"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// The connection is still usable.
	if _, err := tom.Conversation("c1").Send(testCtx(t), client.NewRaw("ok")); err != nil {
		t.Fatal(err)
	}
}

func TestClientTransportErrorsAs(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	_, err := tom.Conversation("missing").Count(testCtx(t))
	var se *client.Error
	if !errors.As(err, &se) || se.Code != 4303 || se.Reason != "CONVERSATION_NOT_FOUND" || se.Detail != "no such conversation" {
		t.Fatalf("err = %#v", err)
	}
	if !errors.Is(err, protocol.ErrConversationNotFound) {
		t.Fatal("errors.Is against the protocol table failed")
	}
}

func TestClientTransportReconnectRelogin(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{Tag: "Mobile"})
	st, _ := tom.SessionToken()
	waitEvent[client.UnreadEvent](t, tom, nil) // its notifTime goes into the re-login
	fs.dropAll()
	waitEvent[client.DisconnectEvent](t, tom, nil)
	sch := waitEvent[client.ScheduleEvent](t, tom, nil)
	if sch.Attempt != 0 || sch.Delay != 10*time.Millisecond {
		t.Fatalf("first schedule = %+v", sch)
	}
	waitEvent[client.RetryEvent](t, tom, nil)
	waitEvent[client.ReconnectEvent](t, tom, nil)
	opens := fs.opens()
	if len(opens) != 2 {
		t.Fatalf("opens = %d", len(opens))
	}
	sm := opens[1].GetSessionMessage()
	if !sm.GetR() || sm.GetSt() != st || sm.Tag != nil || sm.GetLastUnreadNotifTime() != 2 {
		t.Fatalf("re-login = %v", opens[1])
	}
	if !c.Connected() {
		t.Fatal("not connected after reconnect")
	}
	if _, err := tom.Conversation("c1").Send(testCtx(t), client.NewText("back")); err != nil {
		t.Fatal(err)
	}
}

func TestClientTransportTokenRetry(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	fs.invalidateTokens()
	fs.dropAll()
	waitEvent[client.ReconnectEvent](t, tom, nil)
	opens := fs.opens()
	if len(opens) != 3 {
		t.Fatalf("opens = %d, want first login + 2 re-login attempts", len(opens))
	}
	if opens[1].GetSessionMessage().St == nil || opens[2].GetSessionMessage().St != nil || !opens[2].GetSessionMessage().GetR() {
		t.Fatalf("re-login attempts = %v / %v", opens[1], opens[2])
	}
	// A login with a stale token also falls back to a token-less login.
	other := login(t, c, "Jerry", client.LoginOptions{SessionToken: "stale"})
	if st, _ := other.SessionToken(); st == "stale" || st == "" {
		t.Fatalf("token after fallback = %q", st)
	}
}

func TestClientTransportGoawayRotatesURLs(t *testing.T) {
	a, b := startFakeServer(t), startFakeServer(t)
	c := dial(t, fastConfig(a.url, b.url))
	if got := c.URLs(); got[0] != b.url {
		t.Fatalf("urls after first dial = %v, want %s first", got, b.url)
	}
	tom := login(t, c, "Tom", client.LoginOptions{})
	a.goaway()
	d := waitEvent[client.DisconnectEvent](t, tom, nil)
	if !d.Goaway {
		t.Fatalf("disconnect = %+v", d)
	}
	waitEvent[client.ReconnectEvent](t, tom, nil)
	// b does not know a's token: it refuses it (4112) and the client
	// retries without it, still as a re-login.
	opens := b.opens()
	if len(opens) != 2 || opens[0].GetSessionMessage().St == nil || opens[1].GetSessionMessage().St != nil ||
		!opens[1].GetSessionMessage().GetR() {
		t.Fatalf("second server opens = %v", opens)
	}
}

func TestClientTransportFatalCloseCode(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	fs.closeAll(4103)
	ev := waitEvent[client.CloseEvent](t, tom, nil)
	if ev.Code != 4103 {
		t.Fatalf("close = %+v", ev)
	}
	for range tom.Events() {
	}
	if _, err := tom.Conversation("c1").Send(testCtx(t), client.NewText("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if len(fs.opens()) != 1 {
		t.Fatal("reconnected after a fatal close code")
	}
}

func TestClientTransportKick(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	jerry := login(t, c, "Jerry", client.LoginOptions{})
	kick := &pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_closed.Enum(), Service: proto.Int32(2),
		SessionMessage: &pb.SessionCommand{Code: proto.Int32(4111), Reason: new("SESSION_CONFLICT")}}
	fs.pushTo("Tom", kick)
	ev := waitEvent[client.ConflictEvent](t, tom, nil)
	if ev.Reason != "SESSION_CONFLICT" {
		t.Fatalf("conflict = %+v", ev)
	}
	for range tom.Events() {
	}
	// Jerry, on the same socket, is unaffected.
	if _, err := jerry.Conversation("c1").Send(testCtx(t), client.NewText("still here")); err != nil {
		t.Fatal(err)
	}
}

func TestClientTransportEventQueueDropsOldest(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{EventQueueSize: 2})
	jerry := login(t, c, "Jerry", client.LoginOptions{})
	// Tom's queue holds the unread event; 5 messages arrive unread.
	for i := range 5 {
		if _, err := jerry.Conversation("c1").Send(testCtx(t), client.NewRaw(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if d := tom.DroppedEvents(); d != 4 {
			return fmt.Errorf("dropped = %d", d)
		}
		return nil
	})
	for _, want := range []string{"3", "4"} {
		ev := (<-tom.Events()).(client.MessageEvent)
		if ev.Message.Content != want {
			t.Fatalf("kept %q, want %q", ev.Message.Content, want)
		}
	}
}

func TestClientTransportHeartbeatAndLiveness(t *testing.T) {
	fs := startFakeServer(t)
	cfg := fastConfig(fs.url)
	cfg.HeartbeatInterval = 10 * time.Millisecond
	cfg.LivenessTimeout = 300 * time.Millisecond
	c := dial(t, cfg)
	tom := login(t, c, "Tom", client.LoginOptions{})
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := fs.countFrames(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_echo && f.GetI() > 0 }); n < 3 {
			return fmt.Errorf("echoes = %d", n)
		}
		return nil
	})
	// Unanswered echoes make the client give up on the silent socket and
	// reconnect (the re-login is still answered).
	fs.setSilent(true)
	waitEvent[client.DisconnectEvent](t, tom, nil)
	waitEvent[client.ReconnectEvent](t, tom, nil)
}

func TestClientTransportLogoutKeepsSocket(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	jerry := login(t, c, "Jerry", client.LoginOptions{})
	if err := tom.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for range tom.Events() {
	}
	if _, err := jerry.Conversation("c1").Send(testCtx(t), client.NewText("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range jerry.Events() {
	}
	if _, err := jerry.Conversation("c1").Send(testCtx(t), client.NewText("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("after Conn.Close: %v", err)
	}
}

func TestClientTransportDialFailure(t *testing.T) {
	fs := startFakeServer(t)
	fs.stop()
	if _, err := client.Dial(testCtx(t), fastConfig(fs.url)); err == nil {
		t.Fatal("dial to a stopped server succeeded")
	}
}

// lastFrame returns the newest frame the fake server received that matches.
func (fs *fakeServer) lastFrame(match func(*pb.GenericCommand) bool) *pb.GenericCommand {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, f := range slices.Backward(fs.mu.frames) {
		if match(f) {
			return f
		}
	}
	return nil
}

func TestClientTransportFrames(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	sig := func(_ context.Context, id string) (client.Signature, error) {
		return client.Signature{Signature: "sig-" + id, Timestamp: 42, Nonce: "n"}, nil
	}
	var convSigArgs []string
	convSig := func(_ context.Context, cid, id string, members []string, action string) (client.Signature, error) {
		convSigArgs = append(convSigArgs, fmt.Sprintf("%s|%s|%v|%s", cid, id, members, action))
		return client.Signature{Signature: "csig", Timestamp: 43, Nonce: "cn"}, nil
	}
	tom := login(t, c, "Tom", client.LoginOptions{Signature: sig, ConversationSignature: convSig})
	open := fs.opens()[0].GetSessionMessage()
	if open.GetS() != "sig-Tom" || open.GetT() != 42 || open.GetN() != "n" {
		t.Fatalf("login signature = %v", open)
	}
	ctx := testCtx(t)
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{"Jerry", "Jerry"}, Name: "n",
		Attributes: map[string]any{"when": time.UnixMilli(0).UTC()}, Unique: true})
	mustNoErr(t, err)
	start := fs.lastFrame(func(f *pb.GenericCommand) bool { return f.GetOp() == pb.OpType_start }).GetConvMessage()
	if fmt.Sprint(start.GetM()) != "[Jerry Tom]" || !start.GetUnique() || start.GetS() != "csig" ||
		start.GetAttr().GetData() != `{"name":"n","when":{"__type":"Date","iso":"1970-01-01T00:00:00.000Z"}}` {
		t.Fatalf("conv/start = %v", start)
	}
	if fmt.Sprint(convSigArgs) != "[|Tom|[Jerry Tom]|create]" {
		t.Fatalf("conversation signature args = %v", convSigArgs)
	}
	if conv.ID() != "c1" || conv.Info().CreatedAt.IsZero() {
		t.Fatalf("created = %+v", conv.Info())
	}

	m := client.NewText("hi")
	m.Receipt, m.Transient, m.Priority = true, true, client.PriorityHigh
	m.PushData = map[string]any{"alert": "hi"}
	m.MentionAll = true
	sent, err := conv.Send(ctx, m)
	mustNoErr(t, err)
	direct := fs.lastFrame(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_direct })
	d := direct.GetDirectMessage()
	if direct.GetPriority() != 1 || !d.GetR() || !d.GetTransient() || d.GetPushData() != `{"alert":"hi"}` || !d.GetMentionAll() ||
		d.GetDt() == "" || d.BinaryMsg != nil || direct.GetPeerId() != "Tom" {
		t.Fatalf("direct = %v", direct)
	}
	bin, err := conv.Send(ctx, client.NewBinary(nil))
	mustNoErr(t, err)
	if d := fs.lastFrame(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_direct }).GetDirectMessage(); d.Msg != nil || d.BinaryMsg == nil {
		t.Fatalf("empty binary message = %v", d)
	}
	_ = bin

	mustNoErr(t, conv.Read(sent))
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		r := fs.lastFrame(func(f *pb.GenericCommand) bool { return f.GetCmd() == pb.CommandType_read })
		if r == nil {
			return errNotYet
		}
		tu := r.GetReadMessage().GetConvs()[0]
		if r.I != nil || tu.GetCid() != "c1" || tu.GetTimestamp() != 1000 || tu.Mid != nil {
			return fmt.Errorf("read = %v", r)
		}
		return nil
	})

	// Re-login after a drop sends neither tag nor signature.
	fs.dropAll()
	waitEvent[client.ReconnectEvent](t, tom, nil)
	if re := fs.opens()[1].GetSessionMessage(); re.S != nil || re.T != nil || re.Tag != nil || !re.GetR() {
		t.Fatalf("re-login = %v", re)
	}
}

// TestClientTransportBackoffSchedule: with the server gone, reconnect
// attempts follow base * 2^k capped at the maximum (JS: 1 s .. 5 min; here
// scaled down to 10 ms .. 100 ms).
func TestClientTransportBackoffSchedule(t *testing.T) {
	fs := startFakeServer(t)
	c := dial(t, fastConfig(fs.url))
	tom := login(t, c, "Tom", client.LoginOptions{})
	fs.stop()
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for k, d := range want {
		s := waitEvent[client.ScheduleEvent](t, tom, nil)
		if s.Attempt != k || s.Delay != d*time.Millisecond {
			t.Fatalf("schedule %d = %+v, want delay %v", k, s, d*time.Millisecond)
		}
		if r := waitEvent[client.RetryEvent](t, tom, nil); r.Attempt != k {
			t.Fatalf("retry = %+v, want attempt %d", r, k)
		}
	}
	if c.Connected() {
		t.Fatal("connected to a stopped server")
	}
}

func TestClientTransportNoReconnect(t *testing.T) {
	fs := startFakeServer(t)
	cfg := fastConfig(fs.url)
	cfg.NoReconnect = true
	c := dial(t, cfg)
	tom := login(t, c, "Tom", client.LoginOptions{})
	fs.dropAll()
	if ev := waitEvent[client.CloseEvent](t, tom, nil); ev.Code != 1006 {
		t.Fatalf("close = %+v", ev)
	}
	for range tom.Events() {
	}
	if len(fs.opens()) != 1 {
		t.Fatal("reconnected although NoReconnect is set")
	}
}
