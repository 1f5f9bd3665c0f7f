package membership

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// settings returns a config change giving a node the cluster settings of
// a 16-shard, R=3, W=2 cluster named id (empty: a new node).
func settings(id string, shards int) func(*Config) {
	return func(c *Config) {
		c.ClusterID, c.New = id, id == ""
		c.Shards, c.ReplicationFactor, c.WriteQuorum = shards, 3, 2
	}
}

// waitRefused waits until m gave up joining and returns why.
func waitRefused(t *testing.T, m *Membership) error {
	t.Helper()
	select {
	case <-m.Refused():
		return m.Err()
	case <-time.After(convergeTimeout):
		t.Fatalf("%s was not refused", m.cfg.NodeID)
		return nil
	}
}

// assertAlone checks that ms still see exactly want members.
func assertMembers(t *testing.T, m *Membership, want ...string) {
	t.Helper()
	var got []string
	for _, mm := range m.Snapshot().Members {
		got = append(got, mm.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s sees members %v, want %v", m.cfg.NodeID, got, want)
	}
}

func TestMembershipJoinRefusesOtherSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{"shard count", settings("", 64), "shard count (--shards) 16, this node 64"},
		{"cluster id", settings("other", 16), `belongs to cluster "c1", this node to "other"`},
		{"cluster id of a new node", func(c *Config) { settings("other", 16)(c); c.New = true }, `belongs to cluster "c1", this node to "other"`},
		{"replication factor", func(c *Config) { settings("", 16)(c); c.ReplicationFactor = 5 }, "replication factor (--replication-factor) 3, this node 5"},
		{"write quorum", func(c *Config) { settings("", 16)(c); c.WriteQuorum = 1 }, "write quorum (--write-quorum) 2, this node 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := []*Membership{startNodeWith(t, "imnode-0", ring.StateActive, settings("c1", 16))}
			ms = append(ms, startNodeWith(t, "imnode-1", ring.StateActive, settings("", 16), ms[0].Addr()))
			waitConverged(t, ms, 2, 2)
			bad := startNodeWith(t, "imnode-2", ring.StateJoining, tc.mod, ms[0].Addr())
			err := waitRefused(t, bad)
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("refusal = %v, want ErrMismatch naming %q", err, tc.msg)
			}
			if bad.Joined() {
				t.Fatal("the refused node reports joined")
			}
			// The cluster never lists it, even after a few gossip rounds.
			time.Sleep(2 * time.Second)
			for _, m := range ms {
				assertMembers(t, m, "imnode-0", "imnode-1")
			}
		})
	}
}

func TestMembershipJoinRefusesDuplicateID(t *testing.T) {
	ms := []*Membership{startNodeWith(t, "imnode-0", ring.StateActive, settings("c1", 16))}
	ms = append(ms, startNodeWith(t, "imnode-1", ring.StateActive, settings("", 16), ms[0].Addr()))
	waitConverged(t, ms, 2, 2)
	before := ms[0].Snapshot()
	dup := startNodeWith(t, "imnode-1", ring.StateJoining, func(c *Config) {
		settings("", 16)(c)
		c.PeerAddr = "127.0.0.1:9999"
	}, ms[0].Addr())
	err := waitRefused(t, dup)
	if !errors.Is(err, ErrDuplicateID) || !strings.Contains(err.Error(), `node id "imnode-1" is already a live member at `+ms[1].Addr()) {
		t.Fatalf("refusal = %v, want ErrDuplicateID naming imnode-1 at %s", err, ms[1].Addr())
	}
	time.Sleep(2 * time.Second)
	for _, m := range ms {
		s := m.Snapshot()
		mm, _ := s.Member("imnode-1")
		if s.Epoch != before.Epoch || !mm.Live || mm.PeerAddr != "127.0.0.1:71" {
			t.Fatalf("%s: epoch %d (was %d), imnode-1 %+v: the duplicate changed the roster", m.cfg.NodeID, s.Epoch, before.Epoch, mm)
		}
	}
}

// Two new nodes without a cluster id never form a cluster; a bootstrapped
// node hands its id to a new node, which reports it.
func TestMembershipNewNodeLearnsClusterID(t *testing.T) {
	a := startNodeWith(t, "imnode-1", ring.StateJoining, settings("", 16))
	b := startNodeWith(t, "imnode-2", ring.StateJoining, settings("", 16), a.Addr())
	time.Sleep(time.Second)
	if b.Joined() || b.Err() != nil {
		t.Fatalf("a new node joined (%v) or gave up (%v) with nobody knowing a cluster id", b.Joined(), b.Err())
	}
	assertMembers(t, a, "imnode-1")
	assertMembers(t, b, "imnode-2")

	var mu sync.Mutex
	var reported []Identity
	c := startNodeWith(t, "imnode-3", ring.StateJoining, func(c *Config) {
		settings("", 16)(c)
		c.OnIdentity = func(id Identity) {
			mu.Lock()
			reported = append(reported, id)
			mu.Unlock()
		}
	}, a.Addr())
	boot := startNodeWith(t, "imnode-0", ring.StateActive, settings("c1", 16))
	if _, err := c.Join([]string{boot.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitConvergedTo(t, []*Membership{boot, c}, 2, 2, func(*Snapshot) error { return nil })
	if got := c.ClusterID(); got != "c1" {
		t.Fatalf("ClusterID = %q, want c1", got)
	}
	waitConvergedTo(t, []*Membership{boot, c}, 2, 2, func(*Snapshot) error {
		mu.Lock()
		defer mu.Unlock()
		if len(reported) == 0 || reported[len(reported)-1] != (Identity{ClusterID: "c1", Clustered: true}) {
			return errors.New("identity not reported yet")
		}
		return nil
	})
}

func TestMembershipMetaFormat1(t *testing.T) {
	// What an imnode before cluster settings gossiped: accepted, with the
	// settings unknown.
	m := Meta{ID: "imnode-1", State: ring.StateActive, Seq: 3, PeerAddr: "127.0.0.1:7000", Version: "v1"}
	b := []byte{metaFormat1, byte(m.State), 3}
	for _, s := range []string{m.ID, m.ClientAddr, m.PeerAddr, m.AdminAddr, m.Version} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("decodeMeta(format 1) = %+v, %v; want %+v", got, err, m)
	}
}

// A node that left is pruned from listings after LeftRetention; it stays
// in the roster (the epoch never decreases).
func TestMembershipLeftNodePrunedAfterRetention(t *testing.T) {
	short := func(c *Config) { c.LeftRetention = 300 * time.Millisecond }
	a := startNodeWith(t, "imnode-0", ring.StateActive, short)
	b := startNodeWith(t, "imnode-1", ring.StateActive, short, a.Addr())
	waitConverged(t, []*Membership{a, b}, 2, 2)
	if a.Pruned("imnode-1") {
		t.Fatal("a live member is pruned")
	}
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	_ = b.Shutdown()
	s := waitConvergedTo(t, []*Membership{a}, 2, 1, func(s *Snapshot) error {
		if mm, _ := s.Member("imnode-1"); mm.State != ring.StateLeft {
			return errors.New("imnode-1 not left yet")
		}
		return nil
	})
	if a.Pruned("imnode-1") {
		t.Fatal("pruned at once, before LeftRetention")
	}
	harness.CheckFor(t, convergeTimeout, 20*time.Millisecond, func() error {
		if !a.Pruned("imnode-1") {
			return errors.New("not pruned yet")
		}
		return nil
	})
	if got := a.Snapshot(); got.Epoch != s.Epoch || len(got.Members) != 2 {
		t.Fatalf("pruning changed the roster: epoch %d (was %d), %d members", got.Epoch, s.Epoch, len(got.Members))
	}
}
