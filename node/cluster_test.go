package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// startCluster starts n in-process nodes joined into one cluster with 16
// shards, R=3, W=2, and waits until every node is active.
func startCluster(t *testing.T, n int) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range n {
		nd := startNode(t, func(c *node.Config) {
			c.NodeID = fmt.Sprintf("node-%d", i)
			c.Shards = 16
			if i > 0 {
				c.Join = []string{nodes[0].GossipAddr()}
			}
		})
		nodes = append(nodes, nd)
	}
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
	return nodes
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
