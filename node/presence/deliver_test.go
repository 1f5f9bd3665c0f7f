package presence

import (
	"slices"
	"testing"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// TestPresenceLoginRegistersEveryReplica: a login returns only once every
// live replica of the client's shard holds its registration, not only the
// first: Deliver routes pushes through whichever replica is the sending
// node, so a replica that learnt the session in the background could miss
// a push sent right after the login.
func TestPresenceLoginRegistersEveryReplica(t *testing.T) {
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n2", "n3", "n1"}}}
	var queued []func()
	h, err := New(Config{
		NodeID:      "n1",
		ClientShard: func(string, string) uint16 { return 1 },
		Peers:       peers,
		// Background tasks wait here, unrun: the login must not rely on them.
		Async: func(f func()) { queued = append(queued, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Shutdown)
	h.Opened("app", "alice", "", "", 1)
	var to []string
	for _, c := range peers.calls {
		if c.method != wire.Register {
			t.Fatalf("unexpected call %d to %s", c.method, c.to)
		}
		to = append(to, c.to)
	}
	slices.Sort(to)
	if !slices.Equal(to, []string{"n2", "n3"}) {
		t.Fatalf("registrations of alice when the login returned: %v, want [n2 n3]", to)
	}
	if g := h.reg.gateways("app", "alice"); !slices.Equal(g, []string{"n1"}) {
		t.Fatalf("this node's own registry of alice: %v, want [n1]", g)
	}
	if len(queued) != 0 {
		t.Fatalf("%d registration tasks left in the background", len(queued))
	}
}

// newShardedHub returns the hub of node self whose clients are in the
// shards shards names, talking to peers, running background tasks at once.
func newShardedHub(t *testing.T, self string, shards map[string]uint16, peers *recordingPeers) *Hub {
	t.Helper()
	h, err := New(Config{
		NodeID:      self,
		ClientShard: func(_, id string) uint16 { return shards[id] },
		Peers:       peers,
		Async:       func(f func()) { f() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Shutdown)
	return h
}

// recordingGateway records the pushes the hub hands to this node's gateway.
type recordingGateway struct{ pushed [][]string }

func (g *recordingGateway) DeliverEncoded(_ string, ids []string, _ conversation.SessionID, _ []byte) {
	g.pushed = append(g.pushed, ids)
}
func (g *recordingGateway) KickTag(string, string, string, string, conversation.SessionID) {}
func (g *recordingGateway) Kick(string, string) int                                        { return 0 }

// TestPresenceDeliverFromAnyReplica: a push for a client whose shard this
// node replicates, first replica or not, goes from this node's registry
// straight to the client's gateway (wire.MsgPush), or to the local
// gateway; only a push for a client whose shard this node does not
// replicate is relayed to that shard's first replica (wire.MsgFanout).
func TestPresenceDeliverFromAnyReplica(t *testing.T) {
	shards := map[string]uint16{"alice": 1, "bob": 1, "carol": 2, "dave": 3}
	peers := &recordingPeers{replicas: map[uint16][]string{
		1: {"n1", "n2", "n3"}, // this node second
		2: {"n1", "n3"},       // not here
		3: {"n2", "n1"},       // this node last
	}}
	h := newShardedHub(t, "n2", shards, peers)
	h.OnRoster(liveSnap("n2", "n1", "n2", "n3"), false)
	peers.messages = nil
	gw := &recordingGateway{}
	h.SetGateway(gw)
	h.reg.set("app", "alice", "n3", 1)
	h.reg.set("app", "bob", "n2", 1)
	h.reg.set("app", "dave", "n3", 1)

	h.Deliver("app", []string{"alice", "bob", "carol", "dave"}, 0, &pb.GenericCommand{})

	if !slices.EqualFunc(gw.pushed, [][]string{{"bob"}}, slices.Equal) {
		t.Fatalf("local gateway pushes %v, want [[bob]]", gw.pushed)
	}
	got := map[string][]string{}
	for _, m := range peers.messages {
		d := wire.Dec{B: m.payload}
		_, ids, _, _, err := decodePush(&d)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		key := map[uint16]string{wire.MsgPush: "push", wire.MsgFanout: "fanout"}[m.method] + " to " + m.to
		got[key] = append(got[key], ids...)
	}
	want := map[string][]string{"push to n3": {"alice", "dave"}, "fanout to n1": {"carol"}}
	if len(got) != len(want) {
		t.Fatalf("messages %v, want %v", got, want)
	}
	for k, ids := range want {
		slices.Sort(got[k])
		if !slices.Equal(got[k], ids) {
			t.Fatalf("messages %v, want %v", got, want)
		}
	}
}

// TestPresenceOnlineFromAnyReplica: whether a client is online is answered
// from this node's registry when this node replicates the client's shard,
// first replica or not, with no call to another replica; only clients of a
// shard this node does not replicate are asked of that shard's replicas.
func TestPresenceOnlineFromAnyReplica(t *testing.T) {
	shards := map[string]uint16{"alice": 1, "bob": 1, "carol": 2}
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n1", "n2"}, 2: {"n1", "n3"}}}
	h := newShardedHub(t, "n2", shards, peers)
	h.reg.set("app", "alice", "n3", 1)

	if got := h.Online("app", []string{"bob", "alice"}); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("online = %v, want [alice]", got)
	}
	if len(peers.calls) != 0 {
		t.Fatalf("asked other replicas %+v; this node holds the registry", peers.calls)
	}
	// The recording edge answers nothing decodable, so each replica is
	// asked in turn.
	h.Online("app", []string{"carol"})
	var to []string
	for _, c := range peers.calls {
		if c.method != wire.Online {
			t.Fatalf("unexpected call %d to %s", c.method, c.to)
		}
		to = append(to, c.to)
	}
	if !slices.Equal(to, []string{"n1", "n3"}) {
		t.Fatalf("asked %v for carol, want [n1 n3] in order", to)
	}
}

// TestPresenceRelaySkipsJoining: a push for a client whose shard this node
// does not replicate is relayed to the first replica that is not joining:
// a node that just joined is placed before it knows the other members, and
// refuses their messages until it does. Once it is active it is first
// again; a push handed on while warming goes the same way.
func TestPresenceRelaySkipsJoining(t *testing.T) {
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n4", "n2", "n3"}}}
	h := newShardedHub(t, "n1", map[string]uint16{"alice": 1}, peers)
	snap := func(n4 ring.State) *membership.Snapshot {
		s := liveSnap("n1", "n1", "n2", "n3")
		s.Members = append(s.Members, membership.Member{
			Meta: membership.Meta{ID: "n4", State: n4, Seq: 1}, Live: true,
		})
		return s
	}
	relayedTo := func() []string {
		t.Helper()
		var to []string
		for _, m := range peers.messages {
			if m.method == wire.MsgFanout {
				to = append(to, m.to)
			}
		}
		peers.messages = nil
		return to
	}
	h.OnRoster(snap(ring.StateJoining), false)
	peers.messages = nil
	h.Deliver("app", []string{"alice"}, 0, &pb.GenericCommand{})
	if to := relayedTo(); !slices.Equal(to, []string{"n2"}) {
		t.Fatalf("relayed to %v while n4 joins, want [n2]", to)
	}
	if err := h.HandleMessage(&transport.Message{From: "n3", Method: wire.MsgFanout,
		Payload: pushPayload("app", []string{"alice"}, 0, []byte("frame"))}); err != nil {
		t.Fatal(err)
	}
	if to := relayedTo(); !slices.Equal(to, []string{"n2"}) {
		t.Fatalf("handed on to %v while n4 joins, want [n2]", to)
	}
	h.OnRoster(snap(ring.StateActive), false)
	peers.messages = nil
	h.Deliver("app", []string{"alice"}, 0, &pb.GenericCommand{})
	if to := relayedTo(); !slices.Equal(to, []string{"n4"}) {
		t.Fatalf("relayed to %v once n4 is active, want [n4]", to)
	}
}
