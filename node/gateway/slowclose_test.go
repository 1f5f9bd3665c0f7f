package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/session"
	"github.com/imcluster/imcluster/node/store"
)

// oneShard places every key on shard 0, which this node coordinates.
type oneShard struct{}

func (oneShard) ConvShard(string, string) uint16   { return 0 }
func (oneShard) ClientShard(string, string) uint16 { return 0 }
func (oneShard) Count() int                        { return 1 }
func (oneShard) Coordinated() []uint16             { return []uint16{0} }
func (oneShard) Coordinates(uint16) bool           { return true }

// startGateway serves a gateway backed by a real conversation engine and
// Pebble store on a loopback port, with outbound queues of outQueue frames.
func startGateway(t testing.TB, outQueue int) (*Gateway, *prometheus.Registry, string) {
	t.Helper()
	return startGatewayWith(t, func(c *Config) { c.OutboundQueue = outQueue })
}

// startGatewayWith is startGateway with the configuration set by configure.
func startGatewayWith(t testing.TB, configure func(*Config)) (*Gateway, *prometheus.Registry, string) {
	t.Helper()
	st, err := store.Open(store.Config{Dir: t.TempDir(), CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := apps.NewRegistry([]apps.App{apps.Dev()})
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	cfg := Config{Apps: reg, Tokens: session.NewTokens(st, oneShard{}.ClientShard, 0, nil), Registerer: metrics}
	configure(&cfg)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := conversation.New(conversation.Config{Store: st, Shards: oneShard{}, Deliverer: g})
	if err != nil {
		t.Fatal(err)
	}
	g.SetEngine(e)
	ctx, cancel := context.WithCancel(context.Background())
	e.Start(ctx)
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		g.Shutdown(sctx)
		srv.Close()
		cancel()
		e.Stop()
		_ = st.Close()
	})
	return g, metrics, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// testClient is a bare WebSocket client that queues what it receives.
type testClient struct {
	t      testing.TB
	ws     *gws.Conn
	frames chan *pb.GenericCommand
	closed chan error
}

func (c *testClient) OnOpen(*gws.Conn)               {}
func (c *testClient) OnClose(_ *gws.Conn, err error) { c.closed <- err }
func (c *testClient) OnPing(*gws.Conn, []byte)       {}
func (c *testClient) OnPong(*gws.Conn, []byte)       {}
func (c *testClient) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer func() { _ = m.Close() }()
	cmd, err := protocol.Decode(m.Bytes(), false)
	if err != nil {
		c.t.Errorf("undecodable frame: %v", err)
		return
	}
	c.frames <- cmd
}

func dialTest(t testing.TB, url, clientID string) *testClient {
	t.Helper()
	c := &testClient{t: t, frames: make(chan *pb.GenericCommand, 256), closed: make(chan error, 1)}
	ws, _, err := gws.NewClient(c, &gws.ClientOption{
		Addr:          url,
		RequestHeader: http.Header{"Sec-WebSocket-Protocol": []string{protocol.SubprotocolBinary}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.ws = ws
	go ws.ReadLoop()
	t.Cleanup(func() { _ = ws.NetConn().Close() })
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(apps.DevAppID), PeerId: proto.String(clientID), SessionMessage: &pb.SessionCommand{}})
	if r := c.next(func(r *pb.GenericCommand) bool { return r.GetI() == 1 }); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login of %s answered with %v", clientID, r)
	}
	return c
}

func (c *testClient) send(cmd *pb.GenericCommand) {
	c.t.Helper()
	data, _, err := protocol.Encode(cmd, protocol.SubprotocolBinary)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(gws.OpcodeBinary, data); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the first received frame that match accepts, skipping others,
// within 10 s.
func (c *testClient) next(match func(*pb.GenericCommand) bool) *pb.GenericCommand {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-c.frames:
			if match(r) {
				return r
			}
		case err := <-c.closed:
			c.t.Fatalf("connection closed: %v", err)
		case <-deadline:
			c.t.Fatal("no expected frame within 10s")
		}
	}
}

// TestSlowConsumerCloseDoesNotStallOthers: a member whose socket cannot be
// written (its write lock held, as by a writer blocked on a client that
// stopped reading) overflows its outbound queue; the conversation's pushes
// to another member keep arriving meanwhile, because the slow socket is
// closed (1013 "slow consumer", counted once) by a goroutine of its own, not
// by the delivering goroutine, which would wait for that lock.
func TestSlowConsumerCloseDoesNotStallOthers(t *testing.T) {
	const outQueue = 4
	g, metrics, url := startGateway(t, outQueue)
	slow := dialTest(t, url, "slow")
	fast := dialTest(t, url, "fast")
	alice := dialTest(t, url, "alice")
	alice.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(2),
		ConvMessage: &pb.ConvCommand{M: []string{"slow", "fast"}}})
	cid := alice.next(func(r *pb.GenericCommand) bool { return r.GetI() == 2 }).GetConvMessage().GetCid()
	if cid == "" {
		t.Fatal("conv/start gave no cid")
	}

	sessions := g.reg.sessions(apps.DevAppID, "slow")
	if len(sessions) != 1 {
		t.Fatalf("slow has %d sessions, want 1", len(sessions))
	}
	// The hook: hold the slow socket's write lock (batchConn.mu, taken by
	// every write to it) until the end.
	bc := sessions[0].conn.bc
	bc.mu.Lock()
	held := true
	release := func() {
		if held {
			held = false
			bc.mu.Unlock()
		}
	}
	defer release()

	// Enough messages to fill the slow socket's queue (behind the frame its
	// blocked writer took) and overflow it, and a few after.
	for i := range outQueue + 6 {
		text := "m" + string(rune('a'+i))
		alice.send(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(int32(10 + i)),
			DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}})
		alice.next(func(r *pb.GenericCommand) bool { return r.GetI() == int32(10+i) })
		// fast receives every message although the slow socket cannot be
		// written: with a synchronous close the delivery of the message
		// that overflows the queue would wait here for the held lock.
		fast.next(func(r *pb.GenericCommand) bool {
			return r.GetCmd() == pb.CommandType_direct && r.GetDirectMessage().GetMsg() == text
		})
	}
	if got := counter(t, metrics, "imnode_gateway_slow_disconnects_total"); got != 1 {
		t.Fatalf("slow disconnects = %v, want 1", got)
	}

	// Once the lock is free the closer sends 1013 and closes the socket.
	release()
	select {
	case err := <-slow.closed:
		var ce *gws.CloseError
		if !errors.As(err, &ce) || ce.Code != closeSlowClient || string(ce.Reason) != "slow consumer" {
			t.Fatalf("slow socket ended with %v, want close 1013 \"slow consumer\"", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow socket was not closed within 10s")
	}
}

// counter reads a counter without labels from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
