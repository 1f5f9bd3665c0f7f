package node_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// queryRaw sends a default conv/query as clientID and returns its answer.
func queryRaw(c *rawConn, i int32, clientID string) *pb.GenericCommand {
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(i),
		PeerId: proto.String(clientID), ConvMessage: &pb.ConvCommand{}})
	return c.recvResponse(i)
}

// TestNodeAbuseQueryRatePerSession: a session that sends conv/query one
// after the other beyond its app's queriesPerSecondPerSession (0.2/s here:
// one query, then one every 5 s) gets 4318 without its queries being run,
// while another session of the same app is answered. Six queries in a row
// take about 5 s (each refusal is held back up to 1 s), so at most two of
// them can find a token: at least four are refused.
func TestNodeAbuseQueryRatePerSession(t *testing.T) {
	n, app, flooder := pacedSession(t, 0.2)
	answered, refused := 0, 0
	for i := range 6 {
		if queryAnswered(t, flooder, int32(10+i)) {
			answered++
		} else {
			refused++
		}
	}
	if answered < 1 || refused < 4 {
		t.Fatalf("six queries in a row at 0.2/s: %d answered, %d refused; want at least 1 and 4", answered, refused)
	}
	other := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, other, 1, app.ID, "other"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("second login: %v", r)
	}
	if r := queryRaw(other, 2, "other"); r.GetOp() != pb.OpType_results {
		t.Fatalf("another session's first query: %v", r)
	}
}

// TestNodeAbuseQueryRefusalsPaced: a session that sends its next conv/query
// the moment the previous one is answered, at 5/s (bursts of 10), gets about
// one refusal per query answered once its burst is spent, because each
// refusal is held back until the session has a token again. Without the
// pacing it would get hundreds of refusals (each a loopback round trip)
// while it waits for the same four tokens.
func TestNodeAbuseQueryRefusalsPaced(t *testing.T) {
	_, _, flooder := pacedSession(t, 5)
	const burst, beyond = 10, 4
	answered, refused := 0, 0
	for i := int32(10); answered < burst+beyond; i++ {
		if queryAnswered(t, flooder, i) {
			answered++
		} else {
			refused++
		}
	}
	if refused < 1 || refused > 2*beyond+2 {
		t.Fatalf("%d queries answered after %d refusals; want between 1 and %d (one per token, plus rounding)", answered, refused, 2*beyond+2)
	}
}

// pacedSession starts a node with an app whose sessions may run qps
// conv/query per second and logs client "flooder" of it in.
func pacedSession(t *testing.T, qps float64) (*node.Node, apps.App, *rawConn) {
	t.Helper()
	app := apps.App{ID: "paced", Key: "paced-key", MasterKey: "paced-master",
		Limits: apps.Limits{QueriesPerSecondPerSession: qps}}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, app) })
	flooder := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, flooder, 1, app.ID, "flooder"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	return n, app, flooder
}

// queryAnswered sends conv/query number i for "flooder" and reports whether
// it was answered (true) or refused with 4318 (false); any other answer
// fails the test.
func queryAnswered(t *testing.T, c *rawConn, i int32) bool {
	t.Helper()
	r := queryRaw(c, i, "flooder")
	switch {
	case r.GetOp() == pb.OpType_results:
		return true
	case r.GetCmd() == pb.CommandType_error && r.GetErrorMessage().GetCode() == protocol.ErrConversationAPIQuota.Code:
		return false
	}
	t.Fatalf("query %d: %v, want results or error 4318", i, r)
	return false
}
