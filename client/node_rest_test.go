package client_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
)

// gate is a TCP proxy on 127.0.0.1:0 in front of a node. While closed it
// cuts every connection and refuses new ones (they are accepted and closed
// at once), which lets a test keep a client offline deterministically.
type gate struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	open   bool
	active map[net.Conn]struct{}
}

func startGate(t testing.TB, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, open: true, active: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		g.setOpen(false)
		g.wg.Wait()
	})
	return g
}

func (g *gate) url() string { return "ws://" + g.ln.Addr().String() + "/" }

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if !g.open {
			g.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", g.target)
		if err != nil {
			g.mu.Unlock()
			_ = c.Close()
			continue
		}
		g.active[c], g.active[up] = struct{}{}, struct{}{}
		g.mu.Unlock()
		g.wg.Add(2)
		go g.pipe(c, up)
		go g.pipe(up, c)
	}
}

func (g *gate) pipe(dst, src net.Conn) {
	defer g.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	g.mu.Lock()
	delete(g.active, dst)
	delete(g.active, src)
	g.mu.Unlock()
}

// setOpen opens or closes the gate; closing cuts the live connections.
func (g *gate) setOpen(open bool) {
	g.mu.Lock()
	g.open = open
	var cut []net.Conn
	if !open {
		for c := range g.active {
			cut = append(cut, c)
		}
	}
	g.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
}

func (tn *testNode) httpBase() string {
	return "http://" + strings.TrimSuffix(strings.TrimPrefix(tn.url, "ws://"), "/")
}

func TestClientNodeRouterMode(t *testing.T) {
	tn := startNode(t)
	cfg := client.Config{AppID: apps.DevAppID, AppKey: apps.DevAppKey, Server: tn.httpBase()}
	c := dial(t, cfg)
	if urls := c.URLs(); len(urls) == 0 || !strings.HasPrefix(urls[0], "ws://") {
		t.Fatalf("routed urls = %v", urls)
	}
	tom := login(t, c, uid("Tom"), client.LoginOptions{})
	if _, err := tom.OnlineStatus(testCtx(t), []string{tom.ID()}); err != nil {
		t.Fatal(err)
	}
	bad := client.Config{AppID: "no-such-app", Server: tn.httpBase()}
	if _, err := client.Dial(testCtx(t), bad); err == nil {
		t.Fatal("router accepted an unknown app")
	} else if re := (*client.RESTError)(nil); !errors.As(err, &re) || re.Code != 4100 {
		t.Fatalf("unknown app: %v", err)
	}
}

// TestClientNodeMissedNotifications: an invitation made while the client is
// offline arrives as an event after it reconnects (replayed from
// /1.1/rtm/notifications), like the JS SDK's "reliable notifications".
func TestClientNodeMissedNotifications(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	g := startGate(t, strings.TrimPrefix(strings.TrimSuffix(tn.url, "/"), "ws://"))
	cfg := client.Config{AppID: apps.DevAppID, AppKey: apps.DevAppKey, URLs: []string{g.url()}, Server: tn.httpBase()}
	cfg.ReconnectBaseDelay, cfg.ReconnectMaxDelay = 10*time.Millisecond, 50*time.Millisecond
	jerryID := uid("Jerry")
	jerry := login(t, dial(t, cfg), jerryID, client.LoginOptions{})
	tom := tn.login(t, uid("Tom"))

	g.setOpen(false)
	waitEvent[client.DisconnectEvent](t, jerry, nil)
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Mary")}, Unique: true})
	mustNoErr(t, err)
	_, err = conv.Add(ctx, []string{jerryID})
	mustNoErr(t, err)
	g.setOpen(true)

	inv := waitEvent(t, jerry, membership(client.Invited, conv.ID()))
	if inv.By != tom.ID() {
		t.Fatalf("replayed invitation = %+v", inv)
	}
	waitEvent[client.ReconnectEvent](t, jerry, nil)

	mustNoErr(t, conv.UpdateMemberRole(ctx, jerryID, client.RoleManager))
	roles, err := jerry.Conversation(conv.ID()).MemberRoles(ctx)
	mustNoErr(t, err)
	found := false
	for _, r := range roles {
		if r.ClientID == jerryID {
			found = r.Role == client.RoleManager
		}
	}
	if !found {
		t.Fatalf("member roles over REST = %+v, want %s as Manager", roles, jerryID)
	}
}

// TestClientNodeKickedByApp: the server-side API forces a client offline;
// the session ends with a CloseEvent 4115 and does not come back.
func TestClientNodeKickedByApp(t *testing.T) {
	tn := startNode(t)
	c := tn.conn(t)
	tom := login(t, c, uid("Tom"), client.LoginOptions{})
	jerry := login(t, c, uid("Jerry"), client.LoginOptions{})
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, tn.httpBase()+"/1.1/rtm/clients/"+tom.ID()+"/kick", nil)
	mustNoErr(t, err)
	req.Header.Set("X-LC-Id", apps.DevAppID)
	req.Header.Set("X-LC-Key", apps.DevMasterKey+",master")
	resp, err := http.DefaultClient.Do(req)
	mustNoErr(t, err)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("kick: HTTP %d", resp.StatusCode)
	}
	ev := waitEvent[client.CloseEvent](t, tom, nil)
	if ev.Code != 4115 || ev.Reason != "KICKED_BY_APP" {
		t.Fatalf("close = %+v", ev)
	}
	for range tom.Events() {
	}
	// The other session on the socket is unaffected.
	online, err := jerry.OnlineStatus(testCtx(t), []string{tom.ID(), jerry.ID()})
	mustNoErr(t, err)
	if !sameSet(online, []string{jerry.ID()}) {
		t.Fatalf("online after kick = %v", online)
	}
}

// TestClientNodeRESTFallsBackToTheConnectedNode: with Config.Server
// unreachable (a single node that died) or unset, REST calls go to the node
// the client is connected to.
func TestClientNodeRESTFallsBackToTheConnectedNode(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	for _, server := range []string{"http://127.0.0.1:1", ""} {
		cfg := client.Config{AppID: apps.DevAppID, AppKey: apps.DevAppKey, URLs: []string{tn.url}, Server: server}
		tom := login(t, dial(t, cfg), uid("Tom"), client.LoginOptions{})
		conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Jerry")}})
		mustNoErr(t, err)
		roles, err := conv.MemberRoles(ctx)
		if err != nil {
			t.Fatalf("member roles with Server %q: %v", server, err)
		}
		if len(roles) != 0 {
			t.Fatalf("member roles of a new conversation = %+v, want none recorded", roles)
		}
	}
}
