package gateway

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// BenchmarkEchoRoundTrip: one command and its answer through a real
// socket (read, decode, queue, worker, dispatch, encode, write), without
// the engine. Its allocations per op are the gateway's per-command cost
// plus the test client's.
func BenchmarkEchoRoundTrip(b *testing.B) {
	_, _, url := startGatewayWith(b, func(*Config) {})
	c := dialTest(b, url, "echo")
	echo := &pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(9)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.send(echo)
		c.next(func(r *pb.GenericCommand) bool { return r.GetI() == 9 })
	}
}

// BenchmarkDeliverPush: one push (Deliver) to a client's socket and its
// receipt by the client: the gateway's per-push cost (frame with the
// receiver's peerId, the direct write) plus the test client's.
func BenchmarkDeliverPush(b *testing.B) {
	g, _, url := startGatewayWith(b, func(*Config) {})
	c := dialTest(b, url, "bob")
	push := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{
		Cid: proto.String("0123456789abcdef01234567"), Msg: proto.String("hello, bob"), FromPeerId: proto.String("alice"),
		Id: proto.String("Kx3Jf7aQT9mWbR2cY5nE1g"), Timestamp: proto.Int64(1764900000000),
	}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Deliver(apps.DevAppID, []string{"bob"}, 0, push)
		c.next(func(r *pb.GenericCommand) bool { return r.GetCmd() == pb.CommandType_direct })
	}
}
