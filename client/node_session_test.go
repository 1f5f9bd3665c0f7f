package client_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/imcluster/imcluster/client"
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
