package presence

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/wire"
)

// TestPresencePushToCutOffGatewayCounted: a push to a gateway node this
// node is cut off from is still sent (in its place in the connection's
// order) and counted, so the pushes a connection that stays open across a
// cut loses are seen; pushes to reachable gateways are not counted.
func TestPresencePushToCutOffGatewayCounted(t *testing.T) {
	shards := map[string]uint16{"alice": 1, "bob": 1}
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n1", "n2", "n3"}}, down: map[string]bool{"n3": true}}
	reg := prometheus.NewRegistry()
	h, err := New(Config{
		NodeID:      "n1",
		ClientShard: func(_, id string) uint16 { return shards[id] },
		Peers:       peers,
		Async:       func(f func()) { f() },
		Registerer:  reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Shutdown)
	h.OnRoster(liveSnap("n1", "n1", "n2", "n3"), false)
	peers.messages = nil
	h.reg.set("app", "alice", "n2", 1)
	h.reg.set("app", "bob", "n3", 1)

	for range 3 {
		h.Deliver("app", []string{"alice", "bob"}, 0, &pb.GenericCommand{})
	}
	pushes := map[string]int{}
	for _, m := range peers.messages {
		if m.method == wire.MsgPush {
			pushes[m.to]++
		}
	}
	if pushes["n2"] != 3 || pushes["n3"] != 3 {
		t.Fatalf("pushes sent %v, want 3 to each gateway", pushes)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() == "imnode_presence_pushes_to_cut_off_gateways_total" {
			got = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if got != 3 {
		t.Fatalf("imnode_presence_pushes_to_cut_off_gateways_total = %v, want 3 (the pushes to n3)", got)
	}
}
