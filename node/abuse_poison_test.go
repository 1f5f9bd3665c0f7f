package node_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestNodeAbusePoisonedVictimKeepsSocket: the poison scenarios of issue 13
// over the base64 subprotocol (the larger encoding). Mallory starts twelve
// conversations with the victim, each carrying the largest attributes
// allowed, and sends 100 messages of the content limit into one; the
// victim's default query (limit 12) and a 100-message history page are
// answered (cut to fit) and the victim's socket stays open. Before, such
// answers exceeded the 512 KiB write limit and the node closed the socket.
func TestNodeAbusePoisonedVictimKeepsSocket(t *testing.T) {
	n := startNode(t, nil)
	mallory := dialRaw(t, n, protocol.SubprotocolBinary)
	login(t, mallory, 1, "mallory", nil)
	blob := `{"blob":"` + strings.Repeat("x", conversation.MaxAttributesSize-100) + `"}`
	var cid string
	for i := range 12 {
		mallory.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(int32(10 + i)),
			ConvMessage: &pb.ConvCommand{M: []string{"victim"}, Unique: proto.Bool(false), Attr: protocol.JSON(blob)}})
		r := mallory.recvResponse(int32(10 + i))
		if r.GetOp() != pb.OpType_started {
			t.Fatalf("conv/start with maximal attributes: %v", r)
		}
		cid = r.GetConvMessage().GetCid()
	}
	for i := range 100 {
		text := fmt.Sprintf("%04d", i) + strings.Repeat("y", protocol.MaxContentSize-4)
		if r := sendText(mallory, int32(100+i), cid, text); r.GetCmd() != pb.CommandType_ack {
			t.Fatalf("send %d: %v", i, r)
		}
	}

	victim := dialRaw(t, n, protocol.SubprotocolBase64)
	login(t, victim, 1, "victim", nil)
	victim.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(2), PeerId: proto.String("victim"),
		ConvMessage: &pb.ConvCommand{Limit: proto.Int32(12)}})
	if r := recvLarge(t, victim, 2); r.GetOp() != pb.OpType_results {
		t.Fatalf("default query: %v", r)
	}
	victim.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(3), PeerId: proto.String("victim"),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)}})
	if r := recvLarge(t, victim, 3); r.GetCmd() != pb.CommandType_logs || len(r.GetLogsMessage().GetLogs()) == 0 {
		t.Fatalf("history page: %v", r)
	}
	victim.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(4), PeerId: proto.String("victim")})
	if r := recvLarge(t, victim, 4); r.GetCmd() != pb.CommandType_echo {
		t.Fatalf("echo after the poisoned answers: %v", r)
	}
	select {
	case err := <-victim.closed:
		t.Fatalf("the victim's socket was closed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// recvLarge waits for the response i like rawConn.recvResponse, decoding
// frames of any size (protocol.Decode refuses inbound frames over 128 KiB;
// the SDKs accept the node's larger answers).
func recvLarge(t *testing.T, c *rawConn, i int32) *pb.GenericCommand {
	t.Helper()
	for {
		select {
		case f := <-c.frames:
			data := f.data
			if f.text {
				var err error
				if data, err = base64.StdEncoding.DecodeString(string(f.data)); err != nil {
					t.Fatalf("frame is not base64: %v", err)
				}
			}
			var cmd pb.GenericCommand
			if err := proto.Unmarshal(data, &cmd); err != nil {
				t.Fatalf("undecodable frame of %d bytes: %v", len(f.data), err)
			}
			if cmd.I != nil && cmd.GetI() == i {
				return &cmd
			}
		case err := <-c.closed:
			t.Fatalf("the victim's socket was closed: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no response %d within 10 s", i)
		}
	}
}
