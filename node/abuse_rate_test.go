package node_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestNodeAbuseClientSendRate: a client that sends beyond its app's
// sendsPerMinutePerClient (3 here: a burst of 3, then one every 20 s) gets
// 4116 and its message is not stored, on every one of its sessions (a
// second socket of the same client shares the bucket), while another
// client of the app sends freely.
func TestNodeAbuseClientSendRate(t *testing.T) {
	app := apps.App{ID: "sends", Key: "sends-key", MasterKey: "sends-master",
		Limits: apps.Limits{SendsPerMinutePerClient: 3}}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, app) })
	alice := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, alice, 1, app.ID, "alice"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	cid := startConv(t, alice, 2, "bob")
	for i := range 3 {
		if r := sendText(alice, int32(10+i), cid, fmt.Sprint("burst ", i)); r.GetCmd() != pb.CommandType_ack {
			t.Fatalf("send %d of a burst of 3: %v", i, r)
		}
	}
	if r := sendText(alice, 20, cid, "beyond"); r.GetErrorMessage().GetCode() != protocol.ErrMessageSentQuotaExceeded.Code {
		t.Fatalf("fourth send within a minute: %v, want error 4116", r)
	}
	alice2 := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, alice2, 1, app.ID, "alice"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("second login of alice: %v", r)
	}
	if r := sendText(alice2, 2, cid, "other socket"); r.GetErrorMessage().GetCode() != protocol.ErrMessageSentQuotaExceeded.Code {
		t.Fatalf("send from alice's second socket: %v, want error 4116 (one bucket per client)", r)
	}
	bob := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, bob, 1, app.ID, "bob"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login of bob: %v", r)
	}
	if r := sendText(bob, 2, cid, "bob's"); r.GetCmd() != pb.CommandType_ack {
		t.Fatalf("another client's send: %v", r)
	}
	if got := historyLen(bob, 3, cid); got != 4 {
		t.Fatalf("history holds %d messages, want 4 (alice's 3, bob's 1; the refused ones are not stored)", got)
	}
}

// TestNodeAbuseClientOpAndHistoryRates: conversation operations beyond
// opsPerMinutePerClient and history queries beyond
// historyQueriesPerMinutePerClient (2 each here) are answered 4318 and run
// nothing; conv/query, which has a rate of its own, still runs.
func TestNodeAbuseClientOpAndHistoryRates(t *testing.T) {
	app := apps.App{ID: "ops", Key: "ops-key", MasterKey: "ops-master",
		Limits: apps.Limits{OpsPerMinutePerClient: 2, HistoryQueriesPerMinutePerClient: 2}}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, app) })
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, c, 1, app.ID, "carol"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	cid := startConv(t, c, 2, "dave")
	startConv(t, c, 3, "erin")
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(4),
		ConvMessage: &pb.ConvCommand{M: []string{"frank"}, Unique: proto.Bool(false)}})
	if r := c.recvResponse(4); r.GetErrorMessage().GetCode() != protocol.ErrConversationAPIQuota.Code {
		t.Fatalf("third conv/start within a minute: %v, want error 4318", r)
	}
	if r := queryRaw(c, 5, "carol"); r.GetOp() != pb.OpType_results {
		t.Fatalf("conv/query after the operations ran out: %v, want results", r)
	} else if !strings.Contains(r.GetConvMessage().GetResults().GetData(), cid) {
		t.Fatalf("conv/query did not find carol's conversation %s: %v", cid, r)
	}
	for i := range 2 {
		if got := historyLen(c, int32(10+i), cid); got != 0 {
			t.Fatalf("history query %d: %d messages, want 0", i, got)
		}
	}
	c.send(logsRequest(12, cid))
	if r := c.recvResponse(12); r.GetErrorMessage().GetCode() != protocol.ErrConversationAPIQuota.Code {
		t.Fatalf("third history query within a minute: %v, want error 4318", r)
	}
}

// TestNodeAbuseClientRatesOff: a negative rate turns the client limit off.
func TestNodeAbuseClientRatesOff(t *testing.T) {
	app := apps.App{ID: "free", Key: "free-key", MasterKey: "free-master",
		Limits: apps.Limits{SendsPerMinutePerClient: -1}}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, app) })
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	if r := loginApp(t, c, 1, app.ID, "gina"); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	cid := startConv(t, c, 2, "hank")
	for i := range apps.DefaultLimits.SendsPerMinutePerClient + 5 {
		if r := sendText(c, int32(10+i), cid, "x"); r.GetCmd() != pb.CommandType_ack {
			t.Fatalf("send %d with the limit off: %v", i, r)
		}
	}
}

func logsRequest(i int32, cid string) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(i),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)}}
}

// historyLen asks for cid's last 100 messages and returns how many came.
func historyLen(c *rawConn, i int32, cid string) int {
	c.t.Helper()
	c.send(logsRequest(i, cid))
	r := c.recvResponse(i)
	if r.GetCmd() != pb.CommandType_logs {
		c.t.Fatalf("history query: %v", r)
	}
	return len(r.GetLogsMessage().GetLogs())
}
