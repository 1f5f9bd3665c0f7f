package node_test

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*shard).releaseLoop"))
}

// startNode runs a node on 127.0.0.1 port 0 with the development app.
func startNode(t testing.TB, mutate func(*node.Config)) *node.Node {
	t.Helper()
	cfg := node.Config{
		DataDir:       t.TempDir(),
		ClientAddr:    "127.0.0.1:0",
		AdminAddr:     "127.0.0.1:0",
		GossipAddr:    "127.0.0.1:0",
		TransportAddr: "127.0.0.1:0",
		LocalTimings:  true,
		Insecure:      true,
		Apps:          []apps.App{apps.Dev()},
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	// A node without seeds forms its own cluster; one with seeds joins.
	cfg.Bootstrap = len(cfg.Join) == 0
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

// rawConn is a bare WebSocket to a node, for frame-level tests.
type rawConn struct {
	t      testing.TB
	ws     *gws.Conn
	sub    string
	frames chan received
	closed chan error
}

type received struct {
	data []byte
	text bool
}

type rawHandler struct{ c *rawConn }

func (h rawHandler) OnOpen(*gws.Conn)               {}
func (h rawHandler) OnClose(_ *gws.Conn, err error) { h.c.closed <- err }
func (h rawHandler) OnPing(*gws.Conn, []byte)       {}
func (h rawHandler) OnPong(*gws.Conn, []byte)       {}
func (h rawHandler) OnMessage(_ *gws.Conn, m *gws.Message) {
	h.c.frames <- received{data: append([]byte(nil), m.Bytes()...), text: m.Opcode == gws.OpcodeText}
	_ = m.Close()
}

func dialRaw(t testing.TB, n *node.Node, sub string) *rawConn {
	t.Helper()
	c := &rawConn{t: t, sub: sub, frames: make(chan received, 64), closed: make(chan error, 1)}
	ws, resp, err := gws.NewClient(rawHandler{c}, &gws.ClientOption{
		Addr:          "ws://" + n.ClientAddr().String() + "/any/path",
		RequestHeader: http.Header{"Sec-WebSocket-Protocol": []string{sub}},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != sub {
		t.Fatalf("server chose subprotocol %q, want %q echoed", got, sub)
	}
	c.ws = ws
	go ws.ReadLoop()
	t.Cleanup(func() { _ = ws.NetConn().Close() })
	return c
}

func (c *rawConn) send(cmd *pb.GenericCommand) {
	c.t.Helper()
	data, text, err := protocol.Encode(cmd, c.sub)
	if err != nil {
		c.t.Fatal(err)
	}
	op := gws.OpcodeBinary
	if text {
		op = gws.OpcodeText
	}
	if err := c.ws.WriteMessage(op, data); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) sendRaw(op gws.Opcode, data []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(op, data); err != nil {
		c.t.Fatal(err)
	}
}

// sdkCommandTimeout is how long the official SDKs wait for a command's
// answer: the cluster answers within it (a command waiting for a coordinator
// gets the retryable 4200 shortly before the gateway's 15 s request timeout).
const sdkCommandTimeout = 20 * time.Second

func (c *rawConn) recv() *pb.GenericCommand {
	c.t.Helper()
	select {
	case f := <-c.frames:
		if c.sub == protocol.SubprotocolBase64 && !f.text {
			c.t.Fatalf("binary frame on the base64 subprotocol")
		}
		cmd, err := protocol.Decode(f.data, f.text)
		if err != nil {
			c.t.Fatalf("undecodable frame from server: %v", err)
		}
		return cmd
	case err := <-c.closed:
		c.t.Fatalf("connection closed: %v", err)
	case <-time.After(sdkCommandTimeout):
		c.t.Fatalf("no frame within %v", sdkCommandTimeout)
	}
	return nil
}

// recvResponse skips pushes until the response with the given i arrives.
func (c *rawConn) recvResponse(i int32) *pb.GenericCommand {
	c.t.Helper()
	for {
		if r := c.recv(); r.I != nil && r.GetI() == i {
			return r
		}
	}
}

func login(t testing.TB, c *rawConn, i int32, clientID string, sm *pb.SessionCommand) *pb.GenericCommand {
	t.Helper()
	if sm == nil {
		sm = &pb.SessionCommand{}
	}
	req := &pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(i),
		AppId: proto.String(apps.DevAppID), SessionMessage: sm}
	if clientID != "" {
		req.PeerId = proto.String(clientID)
	}
	c.send(req)
	return c.recv()
}

func TestNodeSubprotocolsEchoAndLogin(t *testing.T) {
	n := startNode(t, nil)
	for _, sub := range protocol.Subprotocols {
		t.Run(sub, func(t *testing.T) {
			c := dialRaw(t, n, sub)
			c.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(41)})
			if r := c.recv(); r.GetCmd() != pb.CommandType_echo || r.GetI() != 41 {
				t.Fatalf("echo answered with %v", r)
			}
			r := login(t, c, 42, "tom", &pb.SessionCommand{Ua: proto.String("js/5.0.0-rc.8"), ConfigBitmap: proto.Int64(187)})
			if r.GetCmd() != pb.CommandType_session || r.GetOp() != pb.OpType_opened || r.GetI() != 42 {
				t.Fatalf("login answered with %v", r)
			}
			if r.GetPeerId() != "tom" || r.GetServerTs() == 0 || r.GetSessionMessage().GetSt() == "" ||
				r.GetSessionMessage().GetStTtl() <= 0 || r.GetSessionMessage().Code != nil {
				t.Fatalf("opened lacks peerId/serverTs/st/stTtl or has a code: %v", r)
			}
		})
	}
}

func TestNodeLoginErrors(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	tests := []struct {
		name   string
		appID  string
		client string
		sm     *pb.SessionCommand
		code   int32
		reason string
	}{
		{"unknown app", "nope", "tom", nil, 4100, "APP_NOT_AVAILABLE"},
		{"client id too long", apps.DevAppID, "", nil, 4103, "INVALID_LOGIN"},
		{"bad token", apps.DevAppID, "tom", &pb.SessionCommand{St: proto.String("bogus"), R: proto.Bool(true)}, 4112, "SESSION_TOKEN_EXPIRED"},
	}
	for i, tt := range tests {
		id := tt.client
		if tt.name == "client id too long" {
			id = strings.Repeat("x", 65)
		}
		req := &pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(int32(i + 1)),
			AppId: proto.String(tt.appID), PeerId: proto.String(id), SessionMessage: tt.sm}
		c.send(req)
		r := c.recv()
		if r.GetCmd() != pb.CommandType_error || r.GetI() != int32(i+1) || r.GetErrorMessage().GetCode() != tt.code || r.GetErrorMessage().GetReason() != tt.reason {
			t.Errorf("%s: got %v, want error %d %s", tt.name, r, tt.code, tt.reason)
		}
	}
	// The connection is still healthy.
	if r := login(t, c, 99, "tom", nil); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login after errors: %v", r)
	}
}

func TestNodeMalformedFrames(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	// Field 5 (i = 7) followed by a truncated length-delimited field.
	c.sendRaw(gws.OpcodeBinary, []byte{0x28, 0x07, 0x1a, 0x05, 'a'})
	r := c.recv()
	if r.GetCmd() != pb.CommandType_error || r.GetI() != 7 || r.GetErrorMessage().GetCode() != 4114 {
		t.Fatalf("malformed frame answered with %v, want error 4114 on i=7", r)
	}
	c.sendRaw(gws.OpcodeText, []byte("%%% not base64 %%%"))
	c.sendRaw(gws.OpcodeBinary, []byte{0xff, 0xff, 0xff})
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(8)})
	if r := c.recv(); r.GetCmd() != pb.CommandType_echo || r.GetI() != 8 {
		t.Fatalf("after garbage, echo answered with %v", r)
	}
	// A session command before login.
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(9)})
	if r := c.recv(); r.GetErrorMessage().GetCode() != 4105 || r.GetI() != 9 {
		t.Fatalf("conv/query without a session answered with %v", r)
	}
}

func TestNodeSessionsPerSocketAndQuery(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n, protocol.SubprotocolBase64)
	login(t, c, 1, "tom", nil)
	login(t, c, 2, "jerry", nil)
	anon := login(t, c, 3, "", nil)
	if anon.GetPeerId() == "" {
		t.Fatal("anonymous login got no generated client id")
	}
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(4),
		PeerId: proto.String("jerry"), SessionMessage: &pb.SessionCommand{SessionPeerIds: []string{"non-exists-client-id", "tom"}}})
	r := c.recv()
	if r.GetOp() != pb.OpType_query_result || r.GetPeerId() != "jerry" {
		t.Fatalf("session/query answered with %v", r)
	}
	if got := r.GetSessionMessage().GetOnlineSessionPeerIds(); len(got) != 1 || got[0] != "tom" {
		t.Fatalf("online = %v, want [tom]", got)
	}
	// Logout of the default session (no peerId) closes tom only.
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_close.Enum(), I: proto.Int32(5)})
	if r := c.recv(); r.GetOp() != pb.OpType_closed || r.GetI() != 5 {
		t.Fatalf("close answered with %v", r)
	}
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(6),
		PeerId: proto.String("jerry"), SessionMessage: &pb.SessionCommand{SessionPeerIds: []string{"tom", "jerry"}}})
	if got := c.recv().GetSessionMessage().GetOnlineSessionPeerIds(); len(got) != 1 || got[0] != "jerry" {
		t.Fatalf("online after tom's logout = %v, want [jerry]", got)
	}
}

func TestNodeTagConflictAndTokenRelogin(t *testing.T) {
	n := startNode(t, nil)
	a := dialRaw(t, n, protocol.SubprotocolBinary)
	b := dialRaw(t, n, protocol.SubprotocolBinary)
	first := login(t, a, 1, "tom", &pb.SessionCommand{Tag: proto.String("Mobile"), DeviceId: proto.String("dev-a")})
	token := first.GetSessionMessage().GetSt()
	if r := login(t, b, 1, "tom", &pb.SessionCommand{Tag: proto.String("Mobile"), DeviceId: proto.String("dev-b")}); r.GetOp() != pb.OpType_opened {
		t.Fatalf("second device login: %v", r)
	}
	kick := a.recv()
	if kick.GetCmd() != pb.CommandType_session || kick.GetOp() != pb.OpType_closed || kick.I != nil ||
		kick.GetPeerId() != "tom" || kick.GetService() != 2 || kick.GetSessionMessage().GetCode() != 4111 ||
		kick.GetSessionMessage().GetReason() != "SESSION_CONFLICT" {
		t.Fatalf("first device got %v, want the session/closed 4111 push", kick)
	}
	// The kicked session's token is dead: its automatic re-login gets 4112
	// and, retried without token and with r=true, 4111 (the tag is taken).
	r := login(t, a, 2, "tom", &pb.SessionCommand{St: proto.String(token), R: proto.Bool(true)})
	if r.GetErrorMessage().GetCode() != 4112 {
		t.Fatalf("re-login with the kicked token: %v", r)
	}
	second := login(t, b, 2, "jerry", nil)
	if r := login(t, a, 3, "jerry", &pb.SessionCommand{St: proto.String(second.GetSessionMessage().GetSt()), R: proto.Bool(true)}); r.GetOp() != pb.OpType_opened {
		t.Fatalf("token re-login from another socket: %v", r)
	}
}

func TestNodeBase64FramesAreStandardBase64(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n, protocol.SubprotocolBase64)
	req := &pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(1)}
	raw, _ := proto.Marshal(req)
	c.sendRaw(gws.OpcodeText, []byte(base64.StdEncoding.EncodeToString(raw)))
	f := <-c.frames
	if !f.text {
		t.Fatal("answer on the base64 subprotocol is not a text frame")
	}
	if _, err := base64.StdEncoding.DecodeString(string(f.data)); err != nil {
		t.Fatalf("answer is not standard Base64: %v", err)
	}
}

func TestNodeLoginAndIdleTimeouts(t *testing.T) {
	n := startNode(t, func(c *node.Config) {
		c.LoginTimeout = 200 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond
	})
	tests := []struct {
		name  string
		login bool
		code  uint16
	}{
		{"never logs in", false, 4108},
		{"logs in, then silent", true, 4107},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, n, protocol.SubprotocolBinary)
			if tt.login {
				login(t, c, 1, "tom", nil)
			}
			select {
			case err := <-c.closed:
				var ce *gws.CloseError
				if !errors.As(err, &ce) || ce.Code != tt.code {
					t.Fatalf("closed with %v, want close code %d", err, tt.code)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("socket not closed within 10s")
			}
		})
	}
}
