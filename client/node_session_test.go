package client_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
)

func TestClientNodeSessions(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID := uid("Tom")
	// Single-device login: a second login with the same tag kicks the first.
	old := login(t, tn.conn(t), tomID, client.LoginOptions{Tag: "Mobile"})
	newer := login(t, tn.conn(t), tomID, client.LoginOptions{Tag: "Mobile"})
	if c := waitEvent[client.ConflictEvent](t, old, nil); c.Reason != "SESSION_CONFLICT" {
		t.Fatalf("conflict = %+v", c)
	}
	for range old.Events() {
	}

	// Several sessions on one socket, anonymous login included.
	shared := tn.conn(t)
	jerryID := uid("Jerry")
	jerry := login(t, shared, jerryID, client.LoginOptions{})
	anon := login(t, shared, "", client.LoginOptions{})
	if anon.ID() == "" {
		t.Fatal("anonymous login got no id")
	}
	online, err := jerry.OnlineStatus(ctx, []string{"non-exists-client-id", tomID, anon.ID()})
	mustNoErr(t, err)
	if !sameSet(online, []string{tomID, anon.ID()}) {
		t.Fatalf("online = %v", online)
	}

	// Logout of one session keeps the other on the socket working.
	mustNoErr(t, anon.Close(ctx))
	online, err = jerry.OnlineStatus(ctx, []string{anon.ID(), newer.ID()})
	mustNoErr(t, err)
	if !sameSet(online, []string{newer.ID()}) {
		t.Fatalf("online after logout = %v", online)
	}

	// Token refresh and token login.
	st, err := jerry.RefreshSessionToken(ctx)
	mustNoErr(t, err)
	if st == "" {
		t.Fatal("empty refreshed token")
	}
	again := login(t, tn.conn(t), jerryID, client.LoginOptions{SessionToken: st, Reconnect: true})
	if again.ID() != jerryID {
		t.Fatalf("token login id = %q", again.ID())
	}
	// A bogus token falls back to a plain login (4112, then no token).
	bogus := login(t, tn.conn(t), jerryID, client.LoginOptions{SessionToken: "bogus"})
	if st, _ := bogus.SessionToken(); st == "" || st == "bogus" {
		t.Fatalf("token after fallback = %q", st)
	}
	if _, err := tn.conn(t).Login(ctx, string(bytes.Repeat([]byte("x"), 65)), client.LoginOptions{}); !errors.Is(err, protocol.ErrInvalidLogin) {
		t.Fatalf("65-char id: %v", err)
	}
}

func TestClientNodeSessionReconnect(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID := uid("Tom")
	c := tn.conn(t)
	tom := login(t, c, tomID, client.LoginOptions{Tag: "Mobile"})
	watcher := tn.login(t, uid("Jerry"))
	c.DropConnection()
	waitEvent[client.DisconnectEvent](t, tom, nil)
	waitEvent[client.ReconnectEvent](t, tom, nil)
	if !c.Connected() {
		t.Fatal("not connected after ReconnectEvent")
	}
	online, err := watcher.OnlineStatus(ctx, []string{tomID})
	mustNoErr(t, err)
	if len(online) != 1 {
		t.Fatalf("reconnected client not online: %v", online)
	}
	// The re-login kept the tag (it travels with the session token): a new
	// login with the same tag still kicks it.
	login(t, tn.conn(t), tomID, client.LoginOptions{Tag: "Mobile"})
	waitEvent[client.ConflictEvent](t, tom, nil)
}

// TestClientNodeGoaway: a node shutting down sends goaway; the client moves
// to the next URL and logs in again there (its token is unknown to the
// other node, so the re-login falls back to a token-less one).
func TestClientNodeGoaway(t *testing.T) {
	a, b := startNode(t), startNode(t)
	cfg := client.DefaultConfig(apps.DevAppID, a.url, b.url)
	cfg.ReconnectBaseDelay = 10 * time.Millisecond
	c := dial(t, cfg)
	tom := login(t, c, uid("Tom"), client.LoginOptions{})
	a.stop(t)
	if d := waitEvent[client.DisconnectEvent](t, tom, nil); !d.Goaway {
		t.Fatalf("disconnect = %+v, want goaway", d)
	}
	waitEvent[client.ReconnectEvent](t, tom, nil)
	watcher := b.login(t, uid("Jerry"))
	online, err := watcher.OnlineStatus(testCtx(t), []string{tom.ID()})
	mustNoErr(t, err)
	if len(online) != 1 {
		t.Fatalf("client not online on the second node: %v", online)
	}
}

func TestClientNodeLimits(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tom := tn.login(t, uid("Tom"))
	var eleven []string
	for range 10 {
		eleven = append(eleven, uid("m"))
	}
	// 10 others + the creator = 11 > 10 members of a temporary conversation.
	if _, err := tom.CreateTemporaryConversation(ctx, eleven, time.Minute); err == nil {
		t.Fatal("temporary conversation with 11 members created")
	}
	var many []string
	for range 500 {
		many = append(many, uid("m"))
	}
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: many[:499]})
	mustNoErr(t, err)
	res, err := conv.Add(ctx, many[499:])
	if err == nil && (len(res.Failed) != 1 || res.Failed[0].Code != 4304) {
		t.Fatalf("501st member: %+v", res)
	}
	if err != nil && !errors.Is(err, protocol.ErrConversationFull) {
		t.Fatalf("501st member: %v", err)
	}
}

func TestClientNodeBase64Subprotocol(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	cfg := client.DefaultConfig(apps.DevAppID, tn.url)
	cfg.Subprotocol = protocol.SubprotocolBase64
	tom := login(t, dial(t, cfg), uid("Tom"), client.LoginOptions{})
	jerry := login(t, dial(t, cfg), uid("Jerry"), client.LoginOptions{})
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerry.ID()}, Unique: true})
	mustNoErr(t, err)
	bin := []byte{0, 0xff, 'x'}
	_, err = conv.Send(ctx, client.NewBinary(bin))
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; !bytes.Equal(m.Binary, bin) {
		t.Fatalf("binary over base64 frames = %+v", m)
	}
}
