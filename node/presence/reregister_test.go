package presence

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

func liveSnap(self string, live ...string) *membership.Snapshot {
	s := &membership.Snapshot{Self: self}
	for _, id := range []string{"n1", "n2", "n3"} {
		s.Members = append(s.Members, membership.Member{
			Meta: membership.Meta{ID: id, State: ring.StateActive, Seq: 1},
			Live: slices.Contains(live, id),
		})
	}
	return s
}

// TestPresenceRegistryRevived: forgetDead returns the other nodes that are
// live now and were not in the previous snapshot (all of them the first
// time: a restarted registry knows no gateway).
func TestPresenceRegistryRevived(t *testing.T) {
	r := newTestRegistry()
	steps := []struct {
		live []string
		want []string
	}{
		{[]string{"n2", "n3"}, []string{"n2", "n3"}}, // first snapshot: everyone
		{[]string{"n2", "n3"}, nil},                  // nothing changed
		{[]string{"n3"}, nil},                        // n2 died
		{[]string{"n1", "n2", "n3"}, []string{"n2"}}, // n2 is back; self is never asked
		{[]string{}, nil},
		{[]string{"n3"}, []string{"n3"}},
	}
	for i, s := range steps {
		if got := r.forgetDead(liveSnap("n1", s.live...), 0); !slices.Equal(got, s.want) {
			t.Fatalf("step %d (live %v): revived %v, want %v", i, s.live, got, s.want)
		}
	}
}

// recordingPeers is the transport edge of a Hub: it records what the hub
// sends and answers every call with success.
type recordingPeers struct {
	replicas map[uint16][]string // client shard -> live replicas
	down     map[string]bool     // calls to these fail

	mu       sync.Mutex
	messages []sent
	calls    []sent
}

type sent struct {
	to      string
	method  uint16
	payload []byte
}

func (p *recordingPeers) Coordinators(shard uint16) []string { return p.replicas[shard] }
func (p *recordingPeers) LiveOthers() []string               { return nil }
func (p *recordingPeers) NoteCall(string, error)             {}
func (p *recordingPeers) Reachable(to string) bool           { return !p.down[to] }

func (p *recordingPeers) Call(_ context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, sent{to, method, payload})
	if p.down[to] {
		return nil, transport.ErrUnavailable
	}
	return nil, nil
}

func (p *recordingPeers) Send(to string, method uint16, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.messages = append(p.messages, sent{to, method, payload})
	return nil
}

// TestPresenceReregisterOnRevival: a node that sees a peer come alive asks
// it to register again (wire.MsgReregister); a node asked so registers at
// the asker exactly the sessions whose client shard registry the asker
// holds.
func TestPresenceReregisterOnRevival(t *testing.T) {
	shards := map[string]uint16{"alice": 1, "bob": 2}
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n2", "n1"}, 2: {"n3", "n1"}}}
	h := newShardedHub(t, "n1", shards, peers)
	h.local.m[regKey("app", "alice")] = 2
	h.local.m[regKey("app", "bob")] = 1

	h.OnRoster(liveSnap("n1", "n1", "n2"), false)
	h.OnRoster(liveSnap("n1", "n1", "n2", "n3"), false)
	var asked []string
	for _, m := range peers.messages {
		if m.method == wire.MsgReregister {
			asked = append(asked, m.to)
		}
	}
	if !slices.Equal(asked, []string{"n2", "n3"}) {
		t.Fatalf("asked to re-register: %v, want [n2 n3]", asked)
	}
	if len(peers.calls) != 0 {
		t.Fatalf("registered without a roster change or a request: %v", peers.calls)
	}

	if err := h.HandleMessage(&transport.Message{From: "n2", Method: wire.MsgReregister}); err != nil {
		t.Fatal(err)
	}
	if len(peers.calls) != 1 || peers.calls[0].to != "n2" || peers.calls[0].method != wire.Register {
		t.Fatalf("calls after n2 asked: %+v", peers.calls)
	}
	reg := newTestRegistry()
	if err := reg.apply(nil, "n1", &wire.Dec{B: peers.calls[0].payload}); err != nil {
		t.Fatal(err)
	}
	if got := reg.gateways("app", "alice"); !slices.Equal(got, []string{"n1"}) || reg.m[regKey("app", "alice")]["n1"] != 2 {
		t.Fatalf("n2's registry after the re-registration: %v", reg.m)
	}
	if got := reg.online("app", []string{"bob"}); len(got) != 0 {
		t.Fatalf("bob (registry on n3, n1) registered at n2: %v", reg.m)
	}
}

// TestPresenceHandOnWhileWarming: for RegistryWarmup after its first
// roster, a registry replica hands the recipients it knows no gateway of
// on to the next replica of their client shard, once (a push that was
// handed on goes no further); afterwards it does not.
func TestPresenceHandOnWhileWarming(t *testing.T) {
	now := time.Unix(1000, 0)
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n1", "n2", "n3"}}}
	h, err := New(Config{
		NodeID:         "n1",
		ClientShard:    func(string, string) uint16 { return 1 },
		Peers:          peers,
		Async:          func(f func()) { f() },
		RegistryWarmup: 10 * time.Second,
		Now:            func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Shutdown)
	h.OnRoster(liveSnap("n1", "n1", "n2", "n3"), false)
	h.reg.set("app", "bob", "n3", 1)
	frame := []byte("frame")
	fanout := func(handed bool) []sent {
		t.Helper()
		peers.mu.Lock()
		peers.messages = nil
		peers.mu.Unlock()
		b := pushPayload("app", []string{"alice", "bob"}, 7, frame)
		if handed {
			b = append(b, 1)
		}
		if err := h.HandleMessage(&transport.Message{From: "n3", Method: wire.MsgFanout, Payload: b}); err != nil {
			t.Fatal(err)
		}
		var out []sent
		for _, m := range peers.messages {
			if m.method == wire.MsgFanout || m.method == wire.MsgPush {
				out = append(out, m)
			}
		}
		return out
	}
	check := func(what string, got []sent, wantHandOn bool) {
		t.Helper()
		var pushes, handed int
		for _, m := range got {
			d := wire.Dec{B: m.payload}
			app, ids, except, fr, err := decodePush(&d)
			if err != nil || app != "app" || except != 7 || string(fr) != "frame" {
				t.Fatalf("%s: undecodable %+v: %v", what, m, err)
			}
			switch {
			case m.method == wire.MsgPush && m.to == "n3" && slices.Equal(ids, []string{"bob"}):
				pushes++
			case m.method == wire.MsgFanout && m.to == "n2" && slices.Equal(ids, []string{"alice"}) && len(d.B) > 0 && d.Bool():
				handed++
			default:
				t.Fatalf("%s: unexpected %d to %s for %v", what, m.method, m.to, ids)
			}
		}
		if pushes != 1 || handed != map[bool]int{false: 0, true: 1}[wantHandOn] {
			t.Fatalf("%s: %d pushes to bob's gateway, %d hand-ons of alice (want 1, %v)", what, pushes, handed, wantHandOn)
		}
	}
	check("warming", fanout(false), true)
	check("warming, handed on already", fanout(true), false)
	now = now.Add(10 * time.Second)
	check("warm", fanout(false), false)
	if got := counterValue(t, h.met.handOns); got != 1 {
		t.Fatalf("imnode_presence_handons_total = %v, want 1", got)
	}
}

// TestPresenceReregisterWhenReachable: a registration that failed to reach
// a registry replica is made again, with all the node's sessions there,
// once a call or probe reaches that replica (and only once).
func TestPresenceReregisterWhenReachable(t *testing.T) {
	peers := &recordingPeers{replicas: map[uint16][]string{1: {"n2", "n3"}}, down: map[string]bool{"n2": true}}
	h, err := New(Config{
		NodeID:      "n1",
		ClientShard: func(string, string) uint16 { return 1 },
		Peers:       peers,
		Async:       func(f func()) { f() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Shutdown)
	h.Opened("app", "alice", "", "", 1)
	if len(peers.calls) != 2 {
		t.Fatalf("registrations of alice: %+v, want one to n2 and one to n3", peers.calls)
	}
	peers.calls, peers.down = nil, nil
	h.Reachable("n3")
	if len(peers.calls) != 0 {
		t.Fatalf("registered again at n3, which had it: %+v", peers.calls)
	}
	h.Reachable("n2")
	if len(peers.calls) != 1 || peers.calls[0].to != "n2" || peers.calls[0].method != wire.Register {
		t.Fatalf("calls once n2 was reachable: %+v", peers.calls)
	}
	reg := newTestRegistry()
	if err := reg.apply(nil, "n1", &wire.Dec{B: peers.calls[0].payload}); err != nil {
		t.Fatal(err)
	}
	if got := reg.online("app", []string{"alice"}); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("n2's registry after the re-registration: %v", reg.m)
	}
	h.Reachable("n2")
	if len(peers.calls) != 1 {
		t.Fatalf("registered again at n2 without a new failure: %+v", peers.calls)
	}
	if got := counterValue(t, h.met.reregistrations); got != 1 {
		t.Fatalf("imnode_presence_reregistrations_total = %v, want 1", got)
	}
}

// TestPresenceRegistryReboot: a registration carrying a gateway boot id
// other than the last one drops the entries that gateway made before (it
// restarted: those sessions are gone); one without a boot id (an earlier
// build) or with the same one drops nothing.
func TestPresenceRegistryReboot(t *testing.T) {
	batch := func(boot uint64, clients ...string) []byte {
		var e wire.Enc
		e.U64(uint64(len(clients)))
		for _, c := range clients {
			e.Str("app")
			e.Str(c)
			e.U64(1)
			e.Str("")
			e.Str("")
			e.U64(0)
		}
		if boot != 0 {
			e.U64(boot)
		}
		return e.B
	}
	r := newTestRegistry()
	steps := []struct {
		from    string
		boot    uint64
		clients []string
		online  []string
	}{
		{"n2", 5, []string{"alice"}, []string{"alice"}},
		{"n3", 7, []string{"carol"}, []string{"alice", "carol"}},
		{"n2", 5, []string{"bob"}, []string{"alice", "bob", "carol"}},
		{"n2", 0, nil, []string{"alice", "bob", "carol"}},
		{"n2", 6, nil, []string{"carol"}},
		{"n2", 6, []string{"bob"}, []string{"bob", "carol"}},
	}
	for i, s := range steps {
		if err := r.apply(nil, s.from, &wire.Dec{B: batch(s.boot, s.clients...)}); err != nil {
			t.Fatal(err)
		}
		if got := r.online("app", []string{"alice", "bob", "carol"}); !slices.Equal(got, s.online) {
			t.Fatalf("step %d (%s boot %d): online %v, want %v", i, s.from, s.boot, got, s.online)
		}
	}
	b := batch(1<<40, "dave")
	if err := r.apply(nil, "n2", &wire.Dec{B: b[:len(b)-1]}); err == nil {
		t.Fatal("a batch with a truncated boot id was applied")
	}
	if got := r.online("app", []string{"bob", "dave"}); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("online after a malformed batch = %v, want [bob]", got)
	}
}

// counterValue returns c's current value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
