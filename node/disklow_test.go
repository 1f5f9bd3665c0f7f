package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// startFaultCluster is startCluster with POST /admin/v1/faults enabled (the
// disk's free space can be faked at run time).
func startFaultCluster(t *testing.T, n int) []*node.Node {
	t.Helper()
	return startCluster(t, n, func(c *node.Config) { c.FaultInjection = true })
}

func adminOf(nd *node.Node) *adminapi.Client {
	return adminapi.NewClient("http://"+nd.AdminAddr().String(), "", nil)
}

// setDiskFree makes nd's store see freeMiB free (negative: the real disk)
// and waits until its admin status says the disk is (not) low.
func setDiskFree(t *testing.T, nd *node.Node, freeMiB int64, low bool) {
	t.Helper()
	ac := adminOf(nd)
	if err := ac.Faults(context.Background(), adminapi.FaultRequest{DiskFreeMiB: &freeMiB}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ac.Node(context.Background())
		if err == nil && st.Disk.Low == low && st.Disk.ReserveBytes > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("disk status %+v (%v), want low %v", st.Disk, err, low)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads a counter or gauge without labels from nd's /metrics.
func metric(t *testing.T, nd *node.Node, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + nd.AdminAddr().String() + "/metrics") //nolint:noctx // a test's local call
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not served", name)
	return 0
}

// TestClusterDiskLowNodeCostsNoClientError: with R=3, W=2 a node whose
// disk is below its reserve stops taking writes and coordinating, and the
// other two go on: clients on every node (the low one's included) get every
// send acknowledged, the low node stores none of them (its replica stays
// behind), and once its disk has space it catches up: every shard's
// replicas converge.
func TestClusterDiskLowNodeCostsNoClientError(t *testing.T) {
	nodes := startFaultCluster(t, 3)
	low := nodes[1]
	var conns []*rawConn
	for i, nd := range nodes {
		c := dialRaw(t, nd, protocol.SubprotocolBinary)
		login(t, c, 1, fmt.Sprintf("user%d", i), nil)
		conns = append(conns, c)
	}
	// Conversations spread over the shards, so the low node is the
	// preferred coordinator of some.
	var cids []string
	for i := range 8 {
		cids = append(cids, startConv(t, conns[0], int32(10+i), "user1", "user2"))
	}
	for i, cid := range cids {
		if a := sendText(conns[0], int32(100+i), cid, "before"); a.GetCmd() != pb.CommandType_ack {
			t.Fatalf("send before: %v", a)
		}
	}

	setDiskFree(t, low, 0, true)
	applied := metric(t, low, "imnode_replica_ops_applied_total")
	sent := 0
	for round := range 5 {
		for i, cid := range cids {
			for c, conn := range conns {
				id := int32(1000 + round*100 + i*len(conns) + c)
				if a := sendText(conn, id, cid, fmt.Sprintf("low %d %d %d", round, i, c)); a.GetCmd() != pb.CommandType_ack {
					t.Fatalf("send while node-1 is low (round %d, conv %d, via node-%d): %v", round, i, c, a)
				}
				sent++
			}
		}
	}
	if got := metric(t, low, "imnode_replica_ops_applied_total"); got != applied {
		t.Fatalf("the low node stored replicated writes: ops applied %v -> %v", applied, got)
	}
	if metric(t, low, "imnode_store_disk_low") != 1 {
		t.Fatal("imnode_store_disk_low is not 1 on the low node")
	}
	// The low node holds none of the messages sent while it was low.
	for _, cid := range cids {
		msgs, err := adminOf(low).DebugMessages(context.Background(), apps.Dev().ID, cid)
		if err != nil {
			t.Fatal(err)
		}
		if msgs.Replica && len(msgs.Messages) != 1 {
			t.Fatalf("the low node holds %d messages of %s, want the 1 sent before", len(msgs.Messages), cid)
		}
	}
	// History still reads, through every node.
	for c, conn := range conns {
		conn.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(int32(5000 + c)),
			LogsMessage: &pb.LogsCommand{Cid: proto.String(cids[0]), Limit: proto.Int32(100)}})
		if l := conn.recvResponse(int32(5000 + c)); len(l.GetLogsMessage().GetLogs()) != 1+5*len(conns) {
			t.Fatalf("history via node-%d while node-1 is low: %v", c, l)
		}
	}

	setDiskFree(t, low, -1, false)
	waitDigestsEqual(t, nodes, 16)
	for _, cid := range cids {
		msgs, err := adminOf(low).DebugMessages(context.Background(), apps.Dev().ID, cid)
		if err != nil {
			t.Fatal(err)
		}
		if msgs.Replica && len(msgs.Messages) != 1+5*len(conns) {
			t.Fatalf("after recovery the low node holds %d messages of %s, want %d", len(msgs.Messages), cid, 1+5*len(conns))
		}
	}
	t.Logf("%d sends acknowledged while node-1 was low", sent)
}

// wantStorageFull checks that a response is the protocol's "storage full".
func wantStorageFull(t *testing.T, what string, r *pb.GenericCommand) {
	t.Helper()
	if e := r.GetErrorMessage(); e.GetCode() != protocol.ErrStorageFull.Code || e.GetDetail() != protocol.DetailStorageFull {
		t.Fatalf("%s: %v, want %d %s", what, r, protocol.ErrStorageFull.Code, protocol.DetailStorageFull)
	}
}

// TestNodeDiskLowRefusesWritesServesReads: a single node whose disk is low
// answers writes with the "storage full" error (WebSocket 4301, REST 507)
// at once, stays up and serves reads, and takes writes again once its disk
// has space.
func TestNodeDiskLowRefusesWritesServesReads(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.FaultInjection = true })
	tom := dialRaw(t, n, protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	cid := startConv(t, tom, 2, "jerry")
	if a := sendText(tom, 3, cid, "before"); a.GetCmd() != pb.CommandType_ack {
		t.Fatalf("send: %v", a)
	}
	refused := metric(t, n, "imnode_store_disk_refused_writes_total")

	setDiskFree(t, n, 10, true)
	wantStorageFull(t, "send while low", sendText(tom, 4, cid, "while low"))
	if got := metric(t, n, "imnode_store_disk_refused_writes_total"); got <= refused {
		t.Fatalf("refused writes counted %v, was %v", got, refused)
	}
	code, body := call(t, n, "POST", "/1.1/rtm/conversations/"+cid+"/messages", master(apps.Dev()), `{"from_client":"tom","message":"rest while low"}`)
	if code != http.StatusInsufficientStorage || body["code"] != float64(protocol.ErrStorageFull.Code) ||
		!strings.Contains(fmt.Sprint(body["error"]), "storage is full") {
		t.Fatalf("REST send while low: %d %v, want 507 storage full", code, body)
	}
	// A login stores a session token: refused the same way, not an
	// internal error.
	jerry := dialRaw(t, n, protocol.SubprotocolBinary)
	wantStorageFull(t, "login while low", login(t, jerry, 1, "jerry", nil))
	tom.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(5),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(10)}})
	if l := tom.recvResponse(5); len(l.GetLogsMessage().GetLogs()) != 1 {
		t.Fatalf("history while low: %v, want the one message sent before", l)
	}

	setDiskFree(t, n, -1, false)
	if a := sendText(tom, 6, cid, "after"); a.GetCmd() != pb.CommandType_ack {
		t.Fatalf("send after the disk has space again: %v", a)
	}
}

// TestClusterDiskLowEverywhere: when every replica's disk is low (a shared
// volume fills up), the nodes learn it from each other and one
// coordinates anyway: reads work and writes get "storage full", not a
// retryable error after a timeout.
func TestClusterDiskLowEverywhere(t *testing.T) {
	nodes := startFaultCluster(t, 3)
	tom := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	cid := startConv(t, tom, 2, "jerry")
	if a := sendText(tom, 3, cid, "before"); a.GetCmd() != pb.CommandType_ack {
		t.Fatalf("send: %v", a)
	}
	for _, nd := range nodes {
		setDiskFree(t, nd, 10, true)
	}
	// Until the nodes have asked each other (a lease round), each may
	// leave the shard to the others: the retryable 4200 is what a client
	// meets then, and it resends.
	deadline := time.Now().Add(10 * time.Second)
	for i := int32(10); ; i++ {
		a := sendText(tom, i, cid, "while low")
		if a.GetErrorMessage().GetCode() == protocol.ErrStorageFull.Code {
			wantStorageFull(t, "send with every disk low", a)
			break
		}
		if a.GetErrorMessage().GetCode() != 4200 || time.Now().After(deadline) {
			t.Fatalf("send with every disk low: %v, want storage full", a)
		}
	}
	tom.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(100),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(10)}})
	if l := tom.recvResponse(100); len(l.GetLogsMessage().GetLogs()) != 1 {
		t.Fatalf("history with every disk low: %v", l)
	}
	for _, nd := range nodes {
		setDiskFree(t, nd, -1, false)
	}
	// A coordinator believes a replica low until it asked it again (a
	// lease round): "storage full" may be answered that long.
	deadline = time.Now().Add(10 * time.Second)
	for i := int32(200); ; i++ {
		a := sendText(tom, i, cid, "after")
		if a.GetCmd() == pb.CommandType_ack {
			break
		}
		if c := a.GetErrorMessage().GetCode(); c != 4200 && c != protocol.ErrStorageFull.Code || time.Now().After(deadline) {
			t.Fatalf("send after every disk has space again: %v", a)
		}
	}
}
