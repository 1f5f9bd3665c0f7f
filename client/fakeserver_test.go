package client_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// fakeServer is a minimal in-process twin of imnode's gateway, for testing
// the client's transport behaviour (correlation, routing, heartbeat,
// reconnect, goaway, token re-login) before and independently of the real
// node. It speaks the real codec on a real WebSocket on 127.0.0.1:0.
type fakeServer struct {
	t    testing.TB
	url  string
	srv  *http.Server
	ln   net.Listener
	wg   sync.WaitGroup
	up   *gws.Upgrader
	quit chan struct{}

	mu struct {
		sync.Mutex
		conns   map[*gws.Conn]*fakeConn
		tokens  map[string]string // st -> peer
		opens   []*pb.GenericCommand
		frames  []*pb.GenericCommand
		silent  bool // do not answer echo (liveness tests)
		nextID  int
		nextTok int
	}
}

type fakeConn struct {
	sub   string
	peers []string
}

func startFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{t: t, ln: ln, url: "ws://" + ln.Addr().String() + "/", quit: make(chan struct{})}
	fs.mu.conns = map[*gws.Conn]*fakeConn{}
	fs.mu.tokens = map[string]string{}
	fs.up = gws.NewUpgrader(fs, &gws.ServerOption{SubProtocols: protocol.Subprotocols, Recovery: gws.Recovery})
	fs.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := fs.up.Upgrade(w, r)
		if err != nil {
			return
		}
		fs.mu.Lock()
		fs.mu.conns[ws] = &fakeConn{sub: ws.SubProtocol()}
		fs.mu.Unlock()
		fs.wg.Go(ws.ReadLoop)
	})}
	fs.wg.Go(func() { _ = fs.srv.Serve(ln) })
	t.Cleanup(fs.stop)
	return fs
}

func (fs *fakeServer) stop() {
	_ = fs.srv.Close()
	fs.mu.Lock()
	for ws := range fs.mu.conns {
		_ = ws.NetConn().Close()
	}
	fs.mu.Unlock()
	fs.wg.Wait()
}

func (fs *fakeServer) OnOpen(*gws.Conn) {}

func (fs *fakeServer) OnClose(ws *gws.Conn, _ error) {
	fs.mu.Lock()
	delete(fs.mu.conns, ws)
	fs.mu.Unlock()
}

func (fs *fakeServer) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }
func (fs *fakeServer) OnPong(*gws.Conn, []byte)      {}

func (fs *fakeServer) OnMessage(ws *gws.Conn, m *gws.Message) {
	defer func() { _ = m.Close() }()
	cmd, err := protocol.Decode(m.Bytes(), m.Opcode == gws.OpcodeText)
	if err != nil {
		fs.t.Errorf("fake server: decode: %v", err)
		return
	}
	fs.mu.Lock()
	fs.mu.frames = append(fs.mu.frames, cmd)
	silent := fs.mu.silent
	fs.mu.Unlock()
	if silent && cmd.GetCmd() == pb.CommandType_echo {
		return
	}
	fs.handle(ws, cmd)
}

func (fs *fakeServer) handle(ws *gws.Conn, cmd *pb.GenericCommand) {
	switch cmd.GetCmd() {
	case pb.CommandType_echo:
		fs.send(ws, protocol.Response(cmd, pb.CommandType_echo, nil))
	case pb.CommandType_session:
		fs.session(ws, cmd)
	case pb.CommandType_direct:
		fs.direct(ws, cmd)
	case pb.CommandType_conv:
		if cmd.GetConvMessage().GetCid() == "missing" {
			fs.send(ws, protocol.ErrorResponse(cmd, protocol.ErrConversationNotFound.WithDetail("no such conversation")))
			return
		}
		r := protocol.Response(cmd, pb.CommandType_conv, protocol.Op(pb.OpType_started))
		r.ConvMessage = &pb.ConvCommand{Cid: new("c1"), Cdate: new("2026-01-01T00:00:00.000Z")}
		fs.send(ws, r)
	default: // ack, read: recorded only
	}
}

func (fs *fakeServer) session(ws *gws.Conn, cmd *pb.GenericCommand) {
	switch cmd.GetOp() {
	case pb.OpType_open:
		fs.mu.Lock()
		fs.mu.opens = append(fs.mu.opens, cmd)
		peer := cmd.GetPeerId()
		if peer == "" {
			fs.mu.nextID++
			peer = fmt.Sprintf("anon-%d", fs.mu.nextID)
		}
		if st := cmd.GetSessionMessage().GetSt(); st != "" && fs.mu.tokens[st] != peer {
			fs.mu.Unlock()
			fs.send(ws, protocol.ErrorResponse(cmd, protocol.ErrSessionTokenExpired))
			return
		}
		fs.mu.nextTok++
		st := fmt.Sprintf("st-%s-%d", peer, fs.mu.nextTok)
		fs.mu.tokens[st] = peer
		if fc := fs.mu.conns[ws]; fc != nil {
			fc.peers = append(fc.peers, peer)
		}
		fs.mu.Unlock()
		r := protocol.Response(cmd, pb.CommandType_session, protocol.Op(pb.OpType_opened))
		r.PeerId = new(peer)
		r.ServerTs = proto.Int64(1)
		r.SessionMessage = &pb.SessionCommand{St: new(st), StTtl: proto.Int32(3600)}
		fs.send(ws, r)
		u := protocol.Push(peer, pb.CommandType_unread, nil)
		u.UnreadMessage = &pb.UnreadCommand{NotifTime: proto.Int64(2), Convs: []*pb.UnreadTuple{{Cid: new("c1"), Unread: proto.Int32(1)}}}
		fs.send(ws, u)
	case pb.OpType_close:
		fs.send(ws, protocol.Response(cmd, pb.CommandType_session, protocol.Op(pb.OpType_closed)))
	default:
	}
}

// direct acks the sender and pushes the message to every other session on
// every connection. Content "hang" is never answered.
func (fs *fakeServer) direct(ws *gws.Conn, cmd *pb.GenericCommand) {
	d := cmd.GetDirectMessage()
	if d.GetMsg() == "hang" {
		return
	}
	fs.mu.Lock()
	fs.mu.nextID++
	id := fmt.Sprintf("m%d", fs.mu.nextID)
	type target struct {
		ws   *gws.Conn
		peer string
	}
	var targets []target
	for c, fc := range fs.mu.conns {
		for _, p := range fc.peers {
			if p != cmd.GetPeerId() {
				targets = append(targets, target{c, p})
			}
		}
	}
	fs.mu.Unlock()
	r := protocol.Response(cmd, pb.CommandType_ack, nil)
	r.AckMessage = &pb.AckCommand{Uid: new(id), T: proto.Int64(1000)}
	fs.send(ws, r)
	for _, tg := range targets {
		p := protocol.Push(tg.peer, pb.CommandType_direct, nil)
		p.DirectMessage = &pb.DirectCommand{
			Cid: d.Cid, Id: new(id), FromPeerId: new(cmd.GetPeerId()), Timestamp: proto.Int64(1000),
			Msg: d.Msg, BinaryMsg: d.BinaryMsg,
		}
		if strings.HasPrefix(d.GetCid(), "room") {
			p.DirectMessage.ConvType = proto.Int32(2) // a chat room
		}
		fs.send(tg.ws, p)
	}
}

func (fs *fakeServer) send(ws *gws.Conn, cmd *pb.GenericCommand) {
	fs.mu.Lock()
	sub := protocol.SubprotocolBinary
	if fc := fs.mu.conns[ws]; fc != nil {
		sub = fc.sub
	}
	fs.mu.Unlock()
	frame, text, err := protocol.Encode(cmd, sub)
	if err != nil {
		fs.t.Errorf("fake server: encode: %v", err)
		return
	}
	op := gws.OpcodeBinary
	if text {
		op = gws.OpcodeText
	}
	_ = ws.WriteMessage(op, frame)
}

// pushAll sends cmd (a push template) to every session, with peerId set.
func (fs *fakeServer) pushTo(peer string, cmd *pb.GenericCommand) {
	for _, ws := range fs.connsOf(peer) {
		c := proto.Clone(cmd).(*pb.GenericCommand)
		c.PeerId = new(peer)
		fs.send(ws, c)
	}
}

func (fs *fakeServer) connsOf(peer string) []*gws.Conn {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []*gws.Conn
	for ws, fc := range fs.mu.conns {
		if slices.Contains(fc.peers, peer) {
			out = append(out, ws)
		}
	}
	return out
}

func (fs *fakeServer) allConns() []*gws.Conn {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]*gws.Conn, 0, len(fs.mu.conns))
	for ws := range fs.mu.conns {
		out = append(out, ws)
	}
	return out
}

// dropAll cuts every connection without a close frame.
func (fs *fakeServer) dropAll() {
	for _, ws := range fs.allConns() {
		_ = ws.NetConn().Close()
	}
}

// closeAll closes every connection with the given close code.
func (fs *fakeServer) closeAll(code uint16) {
	for _, ws := range fs.allConns() {
		_ = ws.WriteClose(code, []byte("bye"))
	}
}

func (fs *fakeServer) goaway() {
	for _, ws := range fs.allConns() {
		fs.send(ws, &pb.GenericCommand{Cmd: pb.CommandType_goaway.Enum()})
	}
}

func (fs *fakeServer) invalidateTokens() {
	fs.mu.Lock()
	fs.mu.tokens = map[string]string{}
	fs.mu.Unlock()
}

func (fs *fakeServer) setSilent(v bool) {
	fs.mu.Lock()
	fs.mu.silent = v
	fs.mu.Unlock()
}

func (fs *fakeServer) opens() []*pb.GenericCommand {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]*pb.GenericCommand(nil), fs.mu.opens...)
}

func (fs *fakeServer) countFrames(match func(*pb.GenericCommand) bool) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, f := range fs.mu.frames {
		if match(f) {
			n++
		}
	}
	return n
}

var errNotYet = errors.New("not yet")
