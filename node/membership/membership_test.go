package membership

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/node/ring"
)

func TestMembershipConverges(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			ms := startCluster(t, n)
			s := ms[n-1].Snapshot()
			if s.Epoch != uint64(n) { // every node at seq 1
				t.Fatalf("epoch = %d, want %d", s.Epoch, n)
			}
			m0, ok := s.Member("imnode-0")
			if !ok || m0.PeerAddr != "127.0.0.1:70" || m0.ClientAddr != "127.0.0.1:80" ||
				m0.AdminAddr != "127.0.0.1:90" || m0.Version != "test" || m0.State != ring.StateActive {
				t.Fatalf("imnode-0 as seen by %s: %+v", s.Self, m0)
			}
			if addr, err := ms[1].ResolvePeer("imnode-0"); err != nil || addr != "127.0.0.1:70" {
				t.Fatalf("ResolvePeer = %q, %v", addr, err)
			}
			if _, err := ms[1].ResolvePeer("nobody"); !errors.Is(err, ErrUnknownNode) {
				t.Fatalf("ResolvePeer(nobody) err = %v", err)
			}
			rg, err := ring.New(ring.DefaultConfig(), s.Epoch, s.Roster())
			if err != nil || len(rg.Placed()) != n {
				t.Fatalf("ring from snapshot: %v, placed %v", err, rg.Placed())
			}
			select {
			case <-ms[0].Changes():
			default:
				t.Fatal("no change notification")
			}
		})
	}
}

func TestMembershipStateChangePropagates(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot().Epoch
	steps := []ring.State{ring.StateDraining, ring.StateLeft}
	for i, st := range steps {
		if err := ms[1].SetState(st); err != nil {
			t.Fatal(err)
		}
		waitConvergedTo(t, ms, 3, 3, memberIs("imnode-1", st, before+uint64(i+1)))
	}
	if err := ms[1].SetState(ring.StateActive); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("backwards transition: %v", err)
	}
	if err := ms[1].SetState(ring.StateLeft); err != nil {
		t.Fatalf("same state: %v", err)
	}
}

func TestMembershipDeadNodeKeepsRoster(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot()
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	s := waitConverged(t, ms[:2], 3, 2)
	m, _ := s.Member("imnode-2")
	if m.Live || m.State != ring.StateActive || s.Epoch != before.Epoch {
		t.Fatalf("dead node: %+v, epoch %d -> %d (a dead node must not change the roster)", m, before.Epoch, s.Epoch)
	}
	if s.IsLive("imnode-2") || !s.IsLive("imnode-0") {
		t.Fatal("IsLive wrong")
	}
}

func TestMembershipLeave(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot().Epoch
	if err := ms[2].Leave(); err != nil {
		t.Fatal(err)
	}
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConvergedTo(t, ms[:2], 3, 2, memberIs("imnode-2", ring.StateLeft, before+1))
}

func TestMembershipRemoveDeadNode(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot().Epoch
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms[:2], 3, 2)
	if err := ms[0].Remove("imnode-2"); err != nil {
		t.Fatal(err)
	}
	waitConvergedTo(t, ms[:2], 3, 2, memberIs("imnode-2", ring.StateLeft, before+1))
	if err := ms[0].Remove("imnode-0"); !errors.Is(err, ErrRemoveSelf) {
		t.Fatalf("remove self: %v", err)
	}
	if err := ms[0].Remove("nobody"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("remove unknown: %v", err)
	}
}

// TestMembershipRestartAdoptsSeq: a node that crashes and comes back with
// the same state (and a new address) learns its old seq from the others, so
// the epoch does not move; one that comes back in another state bumps it.
func TestMembershipRestartAdoptsSeq(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot().Epoch + 1
	if err := ms[2].SetState(ring.StateDraining); err != nil { // seq 2
		t.Fatal(err)
	}
	waitConvergedTo(t, ms, 3, 3, memberIs("imnode-2", ring.StateDraining, before))
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms[:2], 3, 2)

	back := startNode(t, "imnode-2", ring.StateDraining, ms[0].Addr())
	s := waitConvergedTo(t, []*Membership{ms[0], ms[1], back}, 3, 3, memberIs("imnode-2", ring.StateDraining, before))
	if m, _ := s.Member("imnode-2"); m.Seq != 2 {
		t.Fatalf("restarted node seq %d", m.Seq)
	}
	// Restarting in a later state re-announces with a higher seq.
	if err := back.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms[:2], 3, 2)
	again := startNode(t, "imnode-2", ring.StateLeft, ms[0].Addr())
	waitConvergedTo(t, []*Membership{ms[0], ms[1], again}, 3, 3, memberIs("imnode-2", ring.StateLeft, before+1))
}

func TestMembershipMetaRoundTrip(t *testing.T) {
	tests := []Meta{
		{ID: "a", State: ring.StateJoining},
		{ID: "imnode-12", State: ring.StateLeft, Seq: 1 << 40, ClientAddr: "10.0.0.1:8080", PeerAddr: "[::1]:7000", AdminAddr: "x:1", Version: "v1.2.3"},
	}
	for _, m := range tests {
		got, err := decodeMeta(encodeMeta(nil, &m))
		if err != nil || got != m {
			t.Fatalf("round trip %+v = %+v, %v", m, got, err)
		}
	}
	bad := [][]byte{nil, {2, 1}, {metaFormat, 0}, {metaFormat, 9}, {metaFormat, 1, 0x80}, {metaFormat, 1, 0, 5, 'a'}, {metaFormat, 1, 0, 0}}
	for _, b := range bad {
		if _, err := decodeMeta(b); !errors.Is(err, ErrBadMeta) {
			t.Fatalf("decodeMeta(%x) err = %v", b, err)
		}
	}
}

func TestMembershipConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no id", func(c *Config) { c.NodeID = "" }, "empty node id"},
		{"meta too big", func(c *Config) { c.Version = strings.Repeat("v", 500) }, "node meta"},
		{"probe timeout", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "probe timeout"},
		{"bad state", func(c *Config) { c.State = 9 }, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultLocalConfig()
			c.NodeID = "imnode-0"
			tt.mod(&c)
			err := c.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig))) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMembershipMergeRules(t *testing.T) {
	tests := []struct {
		name string
		a, b entry
		want bool
	}{
		{"higher seq", entry{ring.StateActive, 3}, entry{ring.StateDraining, 2}, true},
		{"lower seq", entry{ring.StateLeft, 1}, entry{ring.StateActive, 2}, false},
		{"tie later state", entry{ring.StateLeft, 2}, entry{ring.StateDraining, 2}, true},
		{"tie same", entry{ring.StateActive, 2}, entry{ring.StateActive, 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.newer(tt.b); got != tt.want {
				t.Fatalf("newer = %v", got)
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	m := Meta{ID: "imnode-1", State: ring.StateActive, Seq: 7, PeerAddr: "127.0.0.1:7000", Version: "v1"}
	enc := encodeMeta(nil, &m)
	f.Add(enc)
	f.Add(enc[:len(enc)/2])
	f.Add(encodeTable(nil, map[string]entry{"a": {ring.StateActive, 3}, "b": {ring.StateLeft, 9}}))
	f.Add(encodeEntryMsg("x", entry{ring.StateLeft, 2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMeta(b); err == nil {
			if got, err := decodeMeta(encodeMeta(nil, &m)); err != nil || got != m {
				t.Fatalf("meta round trip: %+v -> %+v, %v", m, got, err)
			}
		}
		if tb, err := decodeTable(b); err == nil {
			if got, err := decodeTable(encodeTable(nil, tb)); err != nil || len(got) != len(tb) {
				t.Fatalf("table round trip: %v -> %v, %v", tb, got, err)
			}
		}
		_, _, _ = decodeEntryMsg(b)
	})
}

// TestMembershipRemovedNodeReplaced: a removed node that comes back with its
// old data (state active) accepts its removal; a replacement with the same
// id and an empty disk (state joining) rejoins the roster.
func TestMembershipRemovedNodeReplaced(t *testing.T) {
	ms := startCluster(t, 3)
	before := ms[0].Snapshot().Epoch
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms[:2], 3, 2)
	if err := ms[0].Remove("imnode-2"); err != nil {
		t.Fatal(err)
	}
	waitConvergedTo(t, ms[:2], 3, 2, memberIs("imnode-2", ring.StateLeft, before+1))

	stale := startNode(t, "imnode-2", ring.StateActive, ms[0].Addr())
	waitConvergedTo(t, []*Membership{ms[0], ms[1], stale}, 3, 3, memberIs("imnode-2", ring.StateLeft, before+1))
	if err := stale.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ms[:2], 3, 2)

	replacement := startNode(t, "imnode-2", ring.StateJoining, ms[0].Addr())
	waitConvergedTo(t, []*Membership{ms[0], ms[1], replacement}, 3, 3, memberIs("imnode-2", ring.StateJoining, before+2))
}
