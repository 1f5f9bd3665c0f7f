package client_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// rawConn is a bare WebSocket to the node that records every frame, for
// checking wire details the client API hides (LEANCLOUD-RTM.md section 6).
type rawConn struct {
	t      testing.TB
	ws     *gws.Conn
	sub    string
	frames chan *pb.GenericCommand
	done   chan struct{}
}

func (r *rawConn) OnOpen(*gws.Conn)              {}
func (r *rawConn) OnClose(*gws.Conn, error)      { close(r.done) }
func (r *rawConn) OnPing(ws *gws.Conn, p []byte) { _ = ws.WritePong(p) }
func (r *rawConn) OnPong(*gws.Conn, []byte)      {}
func (r *rawConn) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer func() { _ = m.Close() }()
	cmd, err := protocol.Decode(m.Bytes(), m.Opcode == gws.OpcodeText)
	if err != nil {
		r.t.Errorf("raw: decode: %v", err)
		return
	}
	select {
	case r.frames <- cmd:
	default:
		r.t.Errorf("raw: frame buffer full")
	}
}

func rawDial(t testing.TB, url, sub string) *rawConn {
	t.Helper()
	r := &rawConn{t: t, sub: sub, frames: make(chan *pb.GenericCommand, 256), done: make(chan struct{})}
	ws, _, err := gws.NewClient(r, &gws.ClientOption{Addr: url, RequestHeader: http.Header{"Sec-Websocket-Protocol": {sub}}})
	if err != nil {
		t.Fatal(err)
	}
	if ws.SubProtocol() != sub {
		t.Fatalf("server chose subprotocol %q, want %q", ws.SubProtocol(), sub)
	}
	r.ws = ws
	go ws.ReadLoop()
	t.Cleanup(func() {
		_ = ws.NetConn().Close()
		<-r.done
	})
	return r
}

func (r *rawConn) send(cmd *pb.GenericCommand) {
	r.t.Helper()
	frame, text, err := protocol.Encode(cmd, r.sub)
	if err != nil {
		r.t.Fatal(err)
	}
	op := gws.OpcodeBinary
	if text {
		op = gws.OpcodeText
	}
	if err := r.ws.WriteMessage(op, frame); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next frame matching f within 10 s.
func (r *rawConn) next(f func(*pb.GenericCommand) bool) *pb.GenericCommand {
	r.t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case c := <-r.frames:
			if f(c) {
				return c
			}
		case <-timer.C:
			r.t.Fatal("raw: no matching frame within 10s")
			return nil
		}
	}
}

func byI(i int32) func(*pb.GenericCommand) bool {
	return func(c *pb.GenericCommand) bool { return c.GetI() == i }
}

func TestClientNodeWireDetails(t *testing.T) {
	tn := startNode(t)
	for _, sub := range []string{protocol.SubprotocolBinary, protocol.SubprotocolBase64} {
		t.Run(sub, func(t *testing.T) {
			tom, jerry := uid("Tom"), uid("Jerry")
			rt, rj := rawDial(t, tn.url, sub), rawDial(t, tn.url, sub)
			open := func(r *rawConn, id string, i int32) {
				r.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: new(i),
					AppId: proto.String(apps.DevAppID), PeerId: new(id),
					SessionMessage: &pb.SessionCommand{Ua: new("raw"), ConfigBitmap: proto.Int64(187)}})
				o := r.next(byI(i))
				if o.GetCmd() != pb.CommandType_session || o.GetOp() != pb.OpType_opened || o.GetPeerId() != id ||
					o.ServerTs == nil || o.GetSessionMessage().GetSt() == "" || o.GetSessionMessage().StTtl == nil ||
					o.GetSessionMessage().Code != nil {
					t.Fatalf("session/opened = %v", o)
				}
			}
			open(rt, tom, 1)
			open(rj, jerry, 7)

			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(2)})
			if e := rt.next(byI(2)); e.GetCmd() != pb.CommandType_echo {
				t.Fatalf("echo answered with %v", e)
			}

			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(3), PeerId: new(tom),
				ConvMessage: &pb.ConvCommand{M: []string{jerry, tom}, Unique: new(true), Attr: protocol.JSON("{}")}})
			st := rt.next(byI(3))
			cid := st.GetConvMessage().GetCid()
			if st.GetOp() != pb.OpType_started || cid == "" || st.GetConvMessage().GetCdate() == "" {
				t.Fatalf("conv/started = %v", st)
			}
			joined := rj.next(func(c *pb.GenericCommand) bool { return c.GetOp() == pb.OpType_joined })
			if joined.I != nil || joined.GetService() != 2 || joined.GetPeerId() != jerry || joined.ServerTs == nil ||
				joined.GetNotificationType() != 1 || joined.GetConvMessage().GetInitBy() != tom || joined.GetConvMessage().GetUdate() == "" {
				t.Fatalf("conv/joined push = %v", joined)
			}

			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(4), PeerId: new(tom),
				DirectMessage: &pb.DirectCommand{Cid: new(cid), Msg: new("hi"), MentionAll: new(false), R: new(true)}})
			ack := rt.next(byI(4))
			if ack.GetCmd() != pb.CommandType_ack || ack.GetAckMessage().Code != nil || ack.GetAckMessage().GetUid() == "" || ack.GetAckMessage().T == nil {
				t.Fatalf("ack = %v", ack)
			}
			push := rj.next(func(c *pb.GenericCommand) bool { return c.GetCmd() == pb.CommandType_direct })
			d := push.GetDirectMessage()
			if push.I != nil || push.GetService() != 2 || push.GetPeerId() != jerry || d.BinaryMsg != nil || d.GetMsg() != "hi" ||
				d.GetId() != ack.GetAckMessage().GetUid() || d.GetTimestamp() != ack.GetAckMessage().GetT() || d.GetFromPeerId() != tom || d.GetCid() != cid {
				t.Fatalf("direct push = %v", push)
			}

			// A receiver ack (no i) gets no answer but a receipt to the sender.
			rj.send(&pb.GenericCommand{Cmd: pb.CommandType_ack.Enum(), PeerId: new(jerry),
				AckMessage: &pb.AckCommand{Cid: new(cid), Fromts: d.Timestamp, Tots: d.Timestamp}})
			rcp := rt.next(func(c *pb.GenericCommand) bool { return c.GetCmd() == pb.CommandType_rcp })
			if rcp.I != nil || rcp.GetService() != 2 || rcp.GetRcpMessage().GetId() != d.GetId() || rcp.GetRcpMessage().GetFrom() != jerry {
				t.Fatalf("rcp push = %v", rcp)
			}

			// Errors come back on the request's i with a symbolic reason.
			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_update.Enum(), I: proto.Int32(5), PeerId: new(tom),
				ConvMessage: &pb.ConvCommand{Cid: new("5a5d7433c3422b31ed845e76")}})
			e := rt.next(byI(5))
			if e.GetCmd() != pb.CommandType_error || e.GetErrorMessage().GetCode() != 4303 || e.GetErrorMessage().GetReason() != "CONVERSATION_NOT_FOUND" {
				t.Fatalf("update of an unknown conversation = %v", e)
			}
			// An unknown command still gets an answer on its i.
			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_pubsub.Enum(), Op: pb.OpType_subscribe.Enum(), I: proto.Int32(6), PeerId: new(tom)})
			if u := rt.next(byI(6)); u.GetCmd() != pb.CommandType_error {
				t.Fatalf("unknown command answered with %v", u)
			}
			// Logout answers session/closed.
			rt.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_close.Enum(), I: proto.Int32(8), PeerId: new(tom)})
			if c := rt.next(byI(8)); c.GetCmd() != pb.CommandType_session || c.GetOp() != pb.OpType_closed {
				t.Fatalf("logout answered with %v", c)
			}
		})
	}
}
