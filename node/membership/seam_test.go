package membership

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/transport"
)

// seamNode is how the node package is expected to wire the three cluster
// packages: the transport resolves peers and stamps epochs from the
// membership snapshot, and routing builds a ring from the same snapshot.
type seamNode struct {
	m  *Membership
	tr *transport.Transport
}

func startSeamNode(tb testing.TB, id string, seeds ...string) *seamNode {
	tb.Helper()
	n := &seamNode{}
	tcfg := transport.DefaultLocalConfig()
	tcfg.NodeID = id
	tcfg.Logger = testLogger(tb)
	tcfg.Resolve = func(peer string) (string, error) { return n.m.ResolvePeer(peer) }
	tcfg.Epoch = func() uint64 { return n.m.Snapshot().Epoch }
	tcfg.Handler = transport.HandlerFuncs{Request: func(_ context.Context, req *transport.Request) ([]byte, error) {
		return binary.BigEndian.AppendUint64([]byte(id), req.Epoch), nil
	}}
	tr, err := transport.New(tcfg)
	if err != nil {
		tb.Fatal(err)
	}
	n.tr = tr
	// The transport listens first: its address goes into the gossiped
	// meta. It is not called before the membership exists.
	if err := tr.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tr.Shutdown)

	cfg := DefaultLocalConfig()
	cfg.NodeID = id
	cfg.State = ring.StateActive
	cfg.PeerAddr = tr.Addr().String()
	cfg.Seeds = seeds
	cfg.Logger = tcfg.Logger
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	n.m = m
	if err := m.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Shutdown() })
	return n
}

// route sends a request for conversation conv from n to the coordinator of
// its shard, re-routing on retryable errors until ctx ends.
func (n *seamNode) route(ctx context.Context, conv string) (coord string, epoch uint64, err error) {
	for {
		s := n.m.Snapshot()
		rg, err := ring.New(ring.DefaultConfig(), s.Epoch, s.Roster())
		if err != nil {
			return "", 0, err
		}
		c, ok := rg.Coordinator(rg.ConversationShard("app", conv), s.IsLive)
		if ok {
			var resp []byte
			resp, err = n.tr.Call(ctx, c, 1, nil)
			if err == nil {
				return string(resp[:len(resp)-8]), binary.BigEndian.Uint64(resp[len(resp)-8:]), nil
			}
			if !transport.IsRetryable(err) {
				return "", 0, err
			}
		}
		select {
		case <-ctx.Done():
			return "", 0, fmt.Errorf("routing %s: %w (last: %w)", conv, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestMembershipSeamWithRingAndTransport: every node routes a conversation
// to the same coordinator at the same epoch; after a drain changes the
// roster, requests are re-routed under the new epoch and the draining node
// no longer coordinates.
func TestMembershipSeamWithRingAndTransport(t *testing.T) {
	n0 := startSeamNode(t, "imnode-0")
	nodes := []*seamNode{n0, startSeamNode(t, "imnode-1", n0.m.Addr()), startSeamNode(t, "imnode-2", n0.m.Addr())}
	ms := []*Membership{nodes[0].m, nodes[1].m, nodes[2].m}
	waitConverged(t, ms, 3, 3)

	ctx, cancel := context.WithTimeout(context.Background(), convergeTimeout)
	defer cancel()
	check := func(conv string) (string, uint64) {
		var coord0 string
		var epoch0 uint64
		for i, n := range nodes {
			coord, epoch, err := n.route(ctx, conv)
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			if i == 0 {
				coord0, epoch0 = coord, epoch
			} else if coord != coord0 || epoch != epoch0 {
				t.Fatalf("node %d routed %s to %s@%d, node 0 to %s@%d", i, conv, coord, epoch, coord0, epoch0)
			}
		}
		return coord0, epoch0
	}
	// Find a conversation coordinated by imnode-2, then drain imnode-2.
	var conv string
	for i := 0; ; i++ {
		conv = fmt.Sprintf("conv-%d", i)
		if coord, _ := check(conv); coord == "imnode-2" {
			break
		}
	}
	_, before := check(conv)
	if err := nodes[2].m.SetState(ring.StateDraining); err != nil {
		t.Fatal(err)
	}
	waitConvergedTo(t, ms, 3, 3, memberIs("imnode-2", ring.StateDraining, before+1))
	coord, epoch := check(conv)
	if coord == "imnode-2" || epoch != before+1 {
		t.Fatalf("after drain %s routed to %s at epoch %d (before %d)", conv, coord, epoch, before)
	}
}
