package node_test

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func shortHTTPTimeouts(c *node.Config) {
	c.HTTPRequestTimeout = time.Second
	c.HTTPIdleTimeout = time.Second
}

// waitClosed fails the test unless the server closes c within limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration, what string) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection still open after %s", what, limit)
		}
		return
	}
}

// TestNodeAbuseSlowBodyIsCut: a body sent a byte at a time is cut at the
// request timeout (1 s here; the bound: closed within 3 s). Without the
// timeout the node holds the connection as long as the client dribbles.
func TestNodeAbuseSlowBodyIsCut(t *testing.T) {
	n := startNode(t, shortHTTPTimeouts)
	c, err := net.Dial("tcp", n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	dev := apps.Dev()
	_, _ = c.Write([]byte("POST /1.1/users HTTP/1.1\r\nHost: x\r\nX-LC-Id: " + dev.ID + "\r\nX-LC-Key: " + dev.Key +
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	waitClosed(t, c, 3*time.Second, "a body dribbled a byte per 100 ms")
}

// TestNodeAbuseIdleKeepAliveIsClosed: a keep-alive connection that sends
// nothing after its request is closed after the idle timeout (1 s here;
// the bound: closed within 3 s).
func TestNodeAbuseIdleKeepAliveIsClosed(t *testing.T) {
	n := startNode(t, shortHTTPTimeouts)
	c, err := net.Dial("tcp", n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_, _ = c.Write([]byte("GET /v1/route?appId=" + apps.DevAppID + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("route: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	waitClosed(t, c, 3*time.Second, "an idle keep-alive connection")
}

// TestNodeAbuseWebSocketOutlivesHTTPTimeouts: the HTTP request timeouts do
// not reach into an upgraded WebSocket.
func TestNodeAbuseWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	n := startNode(t, shortHTTPTimeouts)
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := login(t, c, 1, "tom", nil); r.GetCmd() != pb.CommandType_session || r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	time.Sleep(2500 * time.Millisecond) // past both 1 s HTTP timeouts: the point of the test
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(2), PeerId: proto.String("tom")})
	if r := c.recvResponse(2); r.GetCmd() != pb.CommandType_echo {
		t.Fatalf("echo after 2.5 s: %v", r)
	}
}

// TestNodeAbuseSignRefusedOnSignedApps: on an app with loginSignature,
// POST /1.1/rtm/sign signs storage users' logins only when the app sets
// signStorageLogins; otherwise anyone with the appKey could sign up a
// storage user and get a signed login.
func TestNodeAbuseSignRefusedOnSignedApps(t *testing.T) {
	signing := apps.App{ID: "signing-app", Key: "signing-key", MasterKey: "signing-master", LoginSignature: true, SignStorageLogins: true}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, otherApp, signing) })
	for _, tt := range []struct {
		app  apps.App
		want int
	}{{otherApp, 403}, {signing, 200}} {
		h := map[string]string{"X-LC-Id": tt.app.ID, "X-LC-Key": tt.app.Key, "Content-Type": "application/json"}
		code, user := call(t, n, "POST", "/1.1/users", h, `{"username":"mallory","password":"x"}`)
		if code != 201 {
			t.Fatalf("%s: sign-up %d %v", tt.app.ID, code, user)
		}
		code, body := call(t, n, "POST", "/1.1/rtm/sign", h, `{"session_token":"`+user["sessionToken"].(string)+`"}`)
		if code != tt.want {
			t.Fatalf("%s: rtm/sign = %d %v, want %d", tt.app.ID, code, body, tt.want)
		}
	}
}

// limitedApp is a tenant with small login limits.
func limitedApp(perMinutePerIP int, perSecond float64) apps.App {
	return apps.App{ID: "limited", Key: "limited-key", MasterKey: "limited-master",
		Limits: apps.Limits{LoginsPerMinutePerIP: perMinutePerIP, LoginsPerSecond: perSecond}}
}

func loginApp(t *testing.T, c *rawConn, i int32, app, clientID string) *pb.GenericCommand {
	t.Helper()
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(i),
		AppId: proto.String(app), PeerId: proto.String(clientID), SessionMessage: &pb.SessionCommand{}})
	return c.recvResponse(i)
}

// TestNodeAbuseLoginRates: session/open beyond the app's per-address rate
// (3 per minute here) or its per-node rate (burst of 2x 5/s here) is
// answered 4116 and opens nothing; other apps are not affected.
func TestNodeAbuseLoginRates(t *testing.T) {
	for _, tt := range []struct {
		name    string
		app     apps.App
		allowed int
	}{
		{"per address", limitedApp(3, -1), 3},
		{"per app", limitedApp(-1, 5), 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, tt.app) })
			c := dialRaw(t, n, protocol.SubprotocolBinary)
			for i := range tt.allowed {
				if r := loginApp(t, c, int32(i+1), tt.app.ID, "u"); r.GetOp() != pb.OpType_opened {
					t.Fatalf("login %d within the limit: %v", i+1, r)
				}
			}
			r := loginApp(t, c, 99, tt.app.ID, "u2")
			if r.GetCmd() != pb.CommandType_error || r.GetErrorMessage().GetCode() != protocol.ErrMessageSentQuotaExceeded.Code {
				t.Fatalf("login beyond the limit: %v, want error 4116", r)
			}
			if r := login(t, c, 100, "dev-user", nil); r.GetOp() != pb.OpType_opened {
				t.Fatalf("another app's login: %v", r)
			}
		})
	}
}

// TestNodeAbuseConnectionLimits: WebSocket connections from one address
// beyond MaxConnectionsPerIP (3 here) are refused with HTTP 429 before the
// upgrade, and a closed connection frees its slot.
func TestNodeAbuseConnectionLimits(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.MaxConnectionsPerIP = 3 })
	var open []*rawConn
	for range 3 {
		open = append(open, dialRaw(t, n, protocol.SubprotocolBinary))
	}
	if status := upgradeStatus(t, n); status != http.StatusTooManyRequests {
		t.Fatalf("fourth connection: HTTP %d, want 429", status)
	}
	_ = open[0].ws.NetConn().Close()
	deadline := time.Now().Add(5 * time.Second)
	for upgradeStatus(t, n) != http.StatusSwitchingProtocols {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its slot within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upgradeStatus sends a WebSocket upgrade request and returns the status.
func upgradeStatus(t *testing.T, n *node.Node) int {
	t.Helper()
	c, err := net.Dial("tcp", n.ClientAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: lc.protobuf2.3\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return resp.StatusCode
}

// TestNodeAbuseHostHeaderNotTrusted: with --allowed-hosts, /v1/route and
// file URLs refuse a Host outside the list (400) and use a listed one; with
// --public-url, file URLs are built from it, whatever the Host says.
func TestNodeAbuseHostHeaderNotTrusted(t *testing.T) {
	dev := apps.Dev()
	devKey := map[string]string{"X-LC-Id": dev.ID, "X-LC-Key": dev.Key, "Content-Type": "application/json"}
	withHost := func(h map[string]string, host string) map[string]string {
		out := map[string]string{"Host": host}
		maps.Copy(out, h)
		return out
	}
	n := startNode(t, func(c *node.Config) { c.AllowedHosts = []string{"chat.example.com"} })
	_, port, _ := net.SplitHostPort(n.ClientAddr().String())
	if code, body := call(t, n, "GET", "/v1/route?appId="+dev.ID, map[string]string{"Host": "evil.example"}, ""); code != 400 {
		t.Fatalf("route with a foreign Host: %d %v", code, body)
	}
	if code, body := call(t, n, "POST", "/1.1/fileTokens", withHost(devKey, "evil.example"), `{"name":"a.txt","metaData":{}}`); code != 400 {
		t.Fatalf("fileTokens with a foreign Host: %d %v", code, body)
	}
	code, body := call(t, n, "GET", "/v1/route?appId="+dev.ID, map[string]string{"Host": "chat.example.com:" + port}, "")
	if code != 200 || body["server"] != "ws://chat.example.com:"+port {
		t.Fatalf("route with an allowed Host: %d %v", code, body)
	}

	n = startNode(t, func(c *node.Config) { c.PublicURL = "wss://rtm.example.com" })
	code, body = call(t, n, "POST", "/1.1/fileTokens", withHost(devKey, "evil.example"), `{"name":"a.txt","metaData":{}}`)
	if code != 200 || !strings.HasPrefix(body["upload_url"].(string), "https://rtm.example.com/") || !strings.HasPrefix(body["url"].(string), "https://rtm.example.com/") {
		t.Fatalf("fileTokens with --public-url: %d %v", code, body)
	}
}
