package ring

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func members(n int, st State) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("imnode-%d", i), State: st}
	}
	return ms
}

// fataler is the part of testing.TB and *rapid.T that mustNew needs.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

func mustNew(tb fataler, cfg Config, epoch uint64, ms []Member) *Ring {
	tb.Helper()
	rg, err := New(cfg, epoch, ms)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return rg
}

func TestRingNewValidation(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		members []Member
		wantErr error
	}{
		{"defaults", Config{}, members(3, StateActive), nil},
		{"empty roster", DefaultConfig(), nil, nil},
		{"negative shards", Config{Shards: -1}, nil, ErrInvalidConfig},
		{"too many shards", Config{Shards: MaxShards + 1}, nil, ErrInvalidConfig},
		{"replication too big", Config{ReplicationFactor: MaxReplicationFactor + 1}, nil, ErrInvalidConfig},
		{"empty id", DefaultConfig(), []Member{{ID: "", State: StateActive}}, ErrInvalidRoster},
		{"bad state", DefaultConfig(), []Member{{ID: "a", State: StateUnknown}}, ErrInvalidRoster},
		{"state out of range", DefaultConfig(), []Member{{ID: "a", State: 9}}, ErrInvalidRoster},
		{"duplicate", DefaultConfig(), []Member{{ID: "a", State: StateActive}, {ID: "a", State: StateJoining}}, ErrInvalidRoster},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, 1, tt.members)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRingReplicaCounts(t *testing.T) {
	tests := []struct {
		name    string
		members []Member
		wantLen int
	}{
		{"no nodes", nil, 0},
		{"one node", members(1, StateActive), 1},
		{"two nodes", members(2, StateActive), 2},
		{"three nodes", members(3, StateActive), 3},
		{"ten nodes", members(10, StateActive), 3},
		{"joining counts", members(3, StateJoining), 3},
		{"draining not placed", members(3, StateDraining), 0},
		{"left not placed", members(3, StateLeft), 0},
		{"mixed", []Member{{"a", StateActive}, {"b", StateDraining}, {"c", StateJoining}, {"d", StateLeft}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rg := mustNew(t, DefaultConfig(), 1, tt.members)
			for s := range rg.Shards() {
				reps := rg.Replicas(s)
				if len(reps) != tt.wantLen {
					t.Fatalf("shard %d: %d replicas, want %d", s, len(reps), tt.wantLen)
				}
				for i, id := range reps {
					if !rg.State(id).Placed() {
						t.Fatalf("shard %d: replica %q in state %v", s, id, rg.State(id))
					}
					if slices.Contains(reps[:i], id) {
						t.Fatalf("shard %d: duplicate replica %q", s, id)
					}
				}
			}
		})
	}
}

func TestRingCoordinator(t *testing.T) {
	rg := mustNew(t, DefaultConfig(), 7, members(5, StateActive))
	reps := rg.Replicas(42)
	tests := []struct {
		name   string
		down   []string
		want   string
		wantOK bool
	}{
		{"all live", nil, reps[0], true},
		{"first down", reps[:1], reps[1], true},
		{"two down", reps[:2], reps[2], true},
		{"all replicas down", reps, "", false},
		{"other node down", []string{"not-a-replica"}, reps[0], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := func(id string) bool { return !slices.Contains(tt.down, id) }
			got, ok := rg.Coordinator(42, live)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("Coordinator = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if got, _ := rg.Coordinator(42, nil); got != reps[0] {
		t.Fatalf("Coordinator(nil live) = %q, want %q", got, reps[0])
	}
}

// TestRingShardContract pins the hash contract: these values are on disk and
// on the wire. A change here is a cluster migration, not a test update.
func TestRingShardContract(t *testing.T) {
	tests := []struct {
		name string
		fn   func(int, string, string) int
		app  string
		id   string
		want int
	}{
		{"conversation", ConversationShard, "imcluster-dev", "5f1a2b3c4d5e6f7a8b9c0d1e", 1},
		{"conversation other app", ConversationShard, "other-app", "5f1a2b3c4d5e6f7a8b9c0d1e", 40},
		{"client", ClientShard, "imcluster-dev", "Tom", 37},
		{"client empty", ClientShard, "imcluster-dev", "", 145},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fn(DefaultShards, tt.app, tt.id); got != tt.want {
				t.Fatalf("shard = %d, want %d", got, tt.want)
			}
		})
	}
	// Length prefixing keeps part boundaries: ("ab","c") and ("a","bc")
	// are different keys.
	if appendEncString("ab", "c") == appendEncString("a", "bc") {
		t.Fatal("encoding is ambiguous")
	}
	rg := mustNew(t, DefaultConfig(), 1, members(5, StateActive))
	// Placement is a cross-node contract too (rolling upgrades).
	if got := rg.Replicas(0); !slices.Equal(got, []string{"imnode-1", "imnode-3", "imnode-2"}) {
		t.Fatalf("Replicas(0) = %v", got)
	}
	if got := rg.Replicas(255); !slices.Equal(got, []string{"imnode-3", "imnode-0", "imnode-1"}) {
		t.Fatalf("Replicas(255) = %v", got)
	}
	if rg.ConversationShard("a", "b") != ConversationShard(DefaultShards, "a", "b") ||
		rg.ClientShard("a", "b") != ClientShard(DefaultShards, "a", "b") {
		t.Fatal("Ring shard methods disagree with the functions")
	}
}

func appendEncString(parts ...string) string { return string(appendEnc(nil, parts...)) }

func TestRingSignature(t *testing.T) {
	a := mustNew(t, DefaultConfig(), 1, members(4, StateActive))
	b := mustNew(t, DefaultConfig(), 9, reversed(members(4, StateActive)))
	if a.Signature() != b.Signature() {
		t.Fatal("signature depends on epoch or member order")
	}
	ms := members(4, StateActive)
	ms[2].State = StateDraining
	c := mustNew(t, DefaultConfig(), 1, ms)
	if a.Signature() == c.Signature() {
		t.Fatal("signature ignores state")
	}
	d := mustNew(t, Config{Shards: 128}, 1, members(4, StateActive))
	if a.Signature() == d.Signature() {
		t.Fatal("signature ignores shard count")
	}
	if a.Epoch() != 1 || b.Epoch() != 9 {
		t.Fatal("epoch not kept")
	}
}

// TestRingDrainIsALeaveOfThePlacement: a draining node stays in the roster
// (it owns its old copies) but leaves the placement target, so the diff is
// its hand-off plan: it gets nothing, loses every replica, and the move count
// is that of a leave.
func TestRingDrainIsALeaveOfThePlacement(t *testing.T) {
	before := mustNew(t, DefaultConfig(), 1, members(6, StateActive))
	ms := members(6, StateActive)
	ms[3].State = StateDraining
	after := mustNew(t, DefaultConfig(), 2, ms)
	moves, err := Diff(before, after)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, m := range moves {
		if slices.Contains(m.Added, ms[3].ID) {
			t.Fatalf("shard %d: draining node gained a replica", m.Shard)
		}
		if slices.Contains(m.Removed, ms[3].ID) {
			removed++
		}
	}
	if want := len(before.ShardsOf(ms[3].ID)); removed != want || len(after.ShardsOf(ms[3].ID)) != 0 {
		t.Fatalf("draining node lost %d of %d replicas", removed, want)
	}
	if after.State(ms[3].ID) != StateDraining {
		t.Fatal("draining node not in the roster")
	}
	minimal := float64(DefaultShards*3) / 6
	if got := MovedReplicas(moves); float64(got) > maxMoveFactor*minimal {
		t.Fatalf("drain moved %d replicas, minimal %.0f", got, minimal)
	}
}

func TestRingParseState(t *testing.T) {
	for st := StateJoining; st <= StateLeft; st++ {
		got, err := ParseState(st.String())
		if err != nil || got != st {
			t.Fatalf("ParseState(%q) = %v, %v", st.String(), got, err)
		}
	}
	if _, err := ParseState("dead"); err == nil {
		t.Fatal("ParseState accepted an unknown state")
	}
}

func TestRingReplicasOutOfRangePanics(t *testing.T) {
	rg := mustNew(t, DefaultConfig(), 1, members(3, StateActive))
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	rg.Replicas(DefaultShards)
}

func reversed(ms []Member) []Member {
	out := slices.Clone(ms)
	slices.Reverse(out)
	return out
}
