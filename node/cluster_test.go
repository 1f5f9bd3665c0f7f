package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// startCluster starts n in-process nodes joined into one cluster with 16
// shards, R=3, W=2 (then mutate applies to each node's config), and waits
// until every node is active.
func startCluster(t *testing.T, n int, mutate ...func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range n {
		nd := startNode(t, func(c *node.Config) {
			c.NodeID = fmt.Sprintf("node-%d", i)
			c.Shards = 16
			if i > 0 {
				c.Join = []string{nodes[0].GossipAddr()}
			}
			for _, m := range mutate {
				m(c)
			}
		})
		nodes = append(nodes, nd)
	}
	waitActive(t, nodes)
	return nodes
}

// waitActive waits until every node sees all of them alive and active and
// is ready.
func waitActive(t *testing.T, nodes []*node.Node) {
	t.Helper()
	n := len(nodes)
	deadline := time.Now().Add(20 * time.Second)
	for _, nd := range nodes {
		ac := adminapi.NewClient("http://"+nd.AdminAddr().String(), "", nil)
		for {
			cs, err := ac.Cluster(context.Background())
			alive := 0
			for _, m := range cs.Members {
				if m.Alive && m.State == adminapi.StateActive {
					alive++
				}
			}
			if err == nil && alive == n && ac.Readyz(context.Background()) == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster did not converge: %+v %v", cs, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestClusterMessagesAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	tom := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	jerry := dialRaw(t, nodes[1], protocol.SubprotocolBinary)
	spike := dialRaw(t, nodes[2], protocol.SubprotocolBinary)
	for i, c := range []*rawConn{tom, jerry, spike} {
		if r := login(t, c, 1, []string{"tom", "jerry", "spike"}[i], nil); r.GetOp() != pb.OpType_opened {
			t.Fatalf("login: %v", r)
		}
	}
	tom.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(2),
		ConvMessage: &pb.ConvCommand{M: []string{"jerry", "spike"}, Attr: protocol.JSON(`{"name":"trio"}`)}})
	r := tom.recvResponse(2)
	if r.GetOp() != pb.OpType_started {
		t.Fatalf("conv/start: %v", r)
	}
	cid := r.GetConvMessage().GetCid()
	for _, c := range []*rawConn{jerry, spike} {
		p := c.recv()
		if p.GetOp() != pb.OpType_joined || p.GetConvMessage().GetCid() != cid {
			t.Fatalf("invitee got %v, want joined", p)
		}
	}
	for i := range 20 {
		tom.send(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(int32(10 + i)),
			DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(fmt.Sprintf("hi %d", i))}})
		if a := tom.recvResponse(int32(10 + i)); a.GetCmd() != pb.CommandType_ack || a.GetAckMessage().GetUid() == "" {
			t.Fatalf("send %d: %v", i, a)
		}
	}
	for _, c := range []*rawConn{jerry, spike} {
		for i := range 20 {
			p := c.recv()
			for p.GetCmd() == pb.CommandType_conv {
				p = c.recv() // members_joined
			}
			if p.GetCmd() != pb.CommandType_direct || p.GetDirectMessage().GetMsg() != fmt.Sprintf("hi %d", i) {
				t.Fatalf("push %d: %v", i, p)
			}
		}
	}
	// History from every node.
	for i, c := range []*rawConn{tom, jerry, spike} {
		c.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(100),
			LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)}})
		if l := c.recvResponse(100); len(l.GetLogsMessage().GetLogs()) != 20 {
			t.Fatalf("history at node %d: %d messages, %v", i, len(l.GetLogsMessage().GetLogs()), l)
		}
	}
}

// sendText sends a message and returns the response (ack or error).
func sendText(c *rawConn, i int32, cid, text string) *pb.GenericCommand {
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(i),
		DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(text)}})
	return c.recvResponse(i)
}

// sendUntilAcked sends text (request ids from i on) until it is
// acknowledged, resending after the retryable 4200 for at most 10 s, as a
// client does while the cluster moves a shard's coordinator.
func sendUntilAcked(t *testing.T, c *rawConn, i int32, cid, text, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ; ; i++ {
		a := sendText(c, i, cid, text)
		if a.GetCmd() == pb.CommandType_ack {
			return
		}
		if a.GetErrorMessage().GetCode() != 4200 || time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, a)
		}
	}
}

func startConv(t *testing.T, c *rawConn, i int32, members ...string) string {
	t.Helper()
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(i),
		ConvMessage: &pb.ConvCommand{M: members, Unique: proto.Bool(false)}})
	r := c.recvResponse(i)
	if r.GetOp() != pb.OpType_started {
		t.Fatalf("conv/start: %v", r)
	}
	return r.GetConvMessage().GetCid()
}

func TestClusterWritesFailBelowQuorum(t *testing.T) {
	nodes := startCluster(t, 3)
	tom := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	cid := startConv(t, tom, 2, "jerry")
	if a := sendText(tom, 3, cid, "before"); a.GetCmd() != pb.CommandType_ack {
		t.Fatalf("send with every replica up: %v", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes[1].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// One of three down: W=2 still holds. Right after the stop a send may
	// meet the closing connection and get the retryable 4200 (it may have
	// run there); a client resends.
	sendUntilAcked(t, tom, 40, cid, "one down", "send with 2 of 3 replicas")
	if err := nodes[2].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a := sendText(tom, 5, cid, "two down")
	if e := a.GetErrorMessage(); e.GetCode() != 4200 {
		t.Fatalf("send with 1 of 3 replicas: %v, want the retryable 4200", a)
	}
	// The survivor cannot reach a write quorum: it does not coordinate, so
	// reads are refused with the retryable error too rather than answered
	// from a replica that may be stale.
	tom.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(6),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(10)}})
	if l := tom.recvResponse(6); l.GetErrorMessage().GetCode() != 4200 {
		t.Fatalf("history on an isolated node: %v, want the retryable 4200", l)
	}
}

func TestClusterRebuildsAReplicaWhoseDiskWasLost(t *testing.T) {
	nodes := startCluster(t, 3)
	tom := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	cid := startConv(t, tom, 2, "jerry")
	for i := range 30 {
		if a := sendText(tom, int32(10+i), cid, fmt.Sprintf("m%d", i)); a.GetCmd() != pb.CommandType_ack {
			t.Fatalf("send %d: %v", i, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes[2].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// node-2 comes back with an empty disk: it catches up from the others.
	fresh := startNode(t, func(c *node.Config) {
		c.NodeID, c.Shards, c.Join = "node-2", 16, []string{nodes[0].GossipAddr()}
	})
	ac := adminapi.NewClient("http://"+fresh.AdminAddr().String(), "", nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs, err := ac.DebugMessages(context.Background(), "imcluster-dev", cid)
		if err == nil && msgs.Replica && len(msgs.Messages) == 30 && ac.Readyz(context.Background()) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rebuilt replica holds %+v, %v; want all 30 messages", msgs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every shard's replicas converge to equal digests.
	admins := []*adminapi.Client{
		adminapi.NewClient("http://"+nodes[0].AdminAddr().String(), "", nil),
		adminapi.NewClient("http://"+nodes[1].AdminAddr().String(), "", nil), ac,
	}
	for {
		digests := map[int]map[string]bool{}
		for _, a := range admins {
			st, err := a.Shards(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st.Shards {
				if digests[s.Shard] == nil {
					digests[s.Shard] = map[string]bool{}
				}
				digests[s.Shard][s.Digest] = true
			}
		}
		same := len(digests) == 16
		for _, d := range digests {
			same = same && len(d) == 1
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica digests differ: %v", digests)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDigestsEqual polls until the replicas of every shard report the same
// digest across the given nodes.
func waitDigestsEqual(t *testing.T, nodes []*node.Node, shards int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		digests := map[int]map[string]bool{}
		var err error
		for _, nd := range nodes {
			st, e := adminapi.NewClient("http://"+nd.AdminAddr().String(), "", nil).Shards(context.Background())
			if e != nil {
				err = e
				break
			}
			for _, s := range st.Shards {
				if digests[s.Shard] == nil {
					digests[s.Shard] = map[string]bool{}
				}
				digests[s.Shard][s.Digest] = s.Ready
			}
		}
		same := err == nil && len(digests) == shards
		for _, d := range digests {
			for _, ready := range d {
				same = same && len(d) == 1 && ready
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica digests differ: %v %v", digests, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterJoinAndDrainMoveShards(t *testing.T) {
	nodes := startCluster(t, 3)
	tom := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	var cids []string
	for i := range 8 {
		cid := startConv(t, tom, int32(2+i), fmt.Sprintf("peer%d", i))
		cids = append(cids, cid)
		for j := range 5 {
			if a := sendText(tom, int32(100+10*i+j), cid, "x"); a.GetCmd() != pb.CommandType_ack {
				t.Fatalf("send: %v", a)
			}
		}
	}
	fourth := startNode(t, func(c *node.Config) {
		c.NodeID, c.Shards, c.Join = "node-3", 16, []string{nodes[0].GossipAddr()}
	})
	all := append(nodes, fourth)
	waitDigestsEqual(t, all, 16)
	ac := adminapi.NewClient("http://"+fourth.AdminAddr().String(), "", nil)
	if st, err := ac.Node(context.Background()); err != nil || st.ShardsReplicated == 0 {
		t.Fatalf("joined node replicates nothing: %+v %v", st, err)
	}
	// Drain node-1: its shards move to the others, then it leaves.
	drainer := adminapi.NewClient("http://"+nodes[1].AdminAddr().String(), "", nil)
	if _, err := drainer.StartDrain(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := drainer.Drain(context.Background())
		if err == nil && st.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drain did not finish: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rest := []*node.Node{nodes[0], nodes[2], fourth}
	waitDigestsEqual(t, rest, 16)
	// Every message is still there, from every remaining node.
	for _, nd := range rest {
		c := dialRaw(t, nd, protocol.SubprotocolBinary)
		login(t, c, 1, "tom", nil)
		for i, cid := range cids {
			c.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(int32(10 + i)),
				LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)}})
			if l := c.recvResponse(int32(10 + i)); len(l.GetLogsMessage().GetLogs()) != 5 {
				t.Fatalf("history of %s: %v", cid, l)
			}
		}
	}
}

// coordinatorsByShard asks every node which shards it coordinates (holds
// the lease of) and returns the coordinators per shard.
func coordinatorsByShard(t *testing.T, nodes []*node.Node) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for i, nd := range nodes {
		ac := adminapi.NewClient("http://"+nd.AdminAddr().String(), "", nil)
		st, err := ac.Shards(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("node-%d", i)
		for _, s := range st.Shards {
			if s.Coordinator {
				if s.LeaseHolder != id {
					t.Fatalf("%s coordinates shard %d but names %q the lease holder", id, s.Shard, s.LeaseHolder)
				}
				out[s.Shard] = append(out[s.Shard], id)
			}
		}
	}
	return out
}

// waitOneCoordinatorEach polls until each of shards shards has exactly one
// coordinator among nodes, for which ok (if set) holds, and returns the
// coordinators.
func waitOneCoordinatorEach(t *testing.T, nodes []*node.Node, shards int, what string, ok func(coordinator string) bool) map[int][]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		byShard := coordinatorsByShard(t, nodes)
		good := true
		for s := range shards {
			if len(byShard[s]) != 1 || (ok != nil && !ok(byShard[s][0])) {
				good = false
			}
		}
		if good {
			return byShard
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: shards without exactly one coordinator: %v", what, byShard)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterLeasesMoveAwayFromAPartitionedNode partitions a node from the
// other two over the peer transport (gossip still sees it alive): its
// coordinator leases run out and the other two take its shards over, writes
// continue there, and after the partition heals the node coordinates again
// and sees what was written meanwhile.
func TestClusterLeasesMoveAwayFromAPartitionedNode(t *testing.T) {
	var nodes []*node.Node
	for i := range 3 {
		nd := startNode(t, func(c *node.Config) {
			c.NodeID = fmt.Sprintf("node-%d", i)
			c.Shards = 16
			c.FaultInjection = true
			if i > 0 {
				c.Join = []string{nodes[0].GossipAddr()}
			}
		})
		nodes = append(nodes, nd)
	}
	waitActive(t, nodes)
	before := waitOneCoordinatorEach(t, nodes, 16, "all connected", nil)
	owned := 0
	for _, ids := range before {
		if ids[0] == "node-0" {
			owned++
		}
	}
	if owned == 0 {
		t.Fatalf("node-0 coordinates no shard: %v", before)
	}

	tom := dialRaw(t, nodes[1], protocol.SubprotocolBinary)
	login(t, tom, 1, "tom", nil)
	cid := startConv(t, tom, 2, "jerry")

	ac0 := adminapi.NewClient("http://"+nodes[0].AdminAddr().String(), "", nil)
	if err := ac0.Faults(context.Background(), adminapi.FaultRequest{Partition: []string{"node-1", "node-2"}}); err != nil {
		t.Fatal(err)
	}
	// Its leases run out; the others take its shards over.
	waitOneCoordinatorEach(t, nodes, 16, "node-0 partitioned", func(id string) bool { return id != "node-0" })
	sendUntilAcked(t, tom, 10, cid, "during the partition", "send while node-0 is partitioned")

	if err := ac0.Faults(context.Background(), adminapi.FaultRequest{Heal: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		after := waitOneCoordinatorEach(t, nodes, 16, "healed", nil)
		back := 0
		for _, ids := range after {
			if ids[0] == "node-0" {
				back++
			}
		}
		if back == owned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-0 coordinates %d shards after healing, want %d: %v", back, owned, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// History read through node-0 (as coordinator or gateway) has the
	// message written while it was cut off.
	jerry := dialRaw(t, nodes[0], protocol.SubprotocolBinary)
	login(t, jerry, 1, "jerry", nil)
	jerry.send(&pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(2),
		LogsMessage: &pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(10)}})
	logs := jerry.recvResponse(2)
	found := false
	for _, l := range logs.GetLogsMessage().GetLogs() {
		if l.GetData() == "during the partition" {
			found = true
		}
	}
	if !found {
		t.Fatalf("history through node-0 after healing lacks the message sent meanwhile: %v", logs)
	}
}

// TestClusterServerAPIRunsAtTheCoordinator sends through the REST server
// API of every node at once: each command runs at the conversation's
// coordinator, so the messages get distinct, increasing timestamps and
// every member change survives.
func TestClusterServerAPIRunsAtTheCoordinator(t *testing.T) {
	nodes := startCluster(t, 3)
	dev := apps.Dev()
	code, created := call(t, nodes[0], "POST", "/1.1/rtm/conversations", master(dev), `{"client_id":"Tom","members":["Jerry"],"name":"ops"}`)
	if code != 201 {
		t.Fatalf("create = %d %v", code, created)
	}
	cid := created["objectId"].(string)
	const perNode = 10
	var wg sync.WaitGroup
	errs := make(chan string, 3*(perNode+1))
	for i, nd := range nodes {
		wg.Go(func() {
			member := fmt.Sprintf(`{"client_id":"Tom","members":["M%d"]}`, i)
			if code, body := call(t, nd, "POST", "/1.1/rtm/conversations/"+cid+"/members", master(dev), member); code != 200 {
				errs <- fmt.Sprintf("add member via node-%d: %d %v", i, code, body)
			}
			for j := range perNode {
				msg := fmt.Sprintf(`{"from_client":"Tom","message":"node-%d %d"}`, i, j)
				if code, body := call(t, nd, "POST", "/1.1/rtm/conversations/"+cid+"/messages", master(dev), msg); code != 200 {
					errs <- fmt.Sprintf("send via node-%d: %d %v", i, code, body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	code, results := callList(t, nodes[2], "GET", "/1.1/rtm/conversations/"+cid+"/messages?limit=100", master(dev), "")
	if code != 200 || len(results) != 3*perNode {
		t.Fatalf("history = %d, %d messages, want %d: %v", code, len(results), 3*perNode, results)
	}
	seen := map[float64]bool{}
	for _, r := range results {
		ts, _ := r["timestamp"].(float64)
		if seen[ts] {
			t.Fatalf("two messages with timestamp %v: %v", ts, results)
		}
		seen[ts] = true
	}
	code, got := call(t, nodes[1], "GET", "/1.1/rtm/conversations/"+cid, master(dev), "")
	convs, _ := got["results"].([]any)
	if code != 200 || len(convs) != 1 {
		t.Fatalf("get = %d %v", code, got)
	}
	m := fmt.Sprint(convs[0].(map[string]any)["m"])
	for _, want := range []string{"Tom", "Jerry", "M0", "M1", "M2"} {
		if !strings.Contains(m, want) {
			t.Fatalf("members %s lack %s", m, want)
		}
	}
}
