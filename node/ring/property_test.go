package ring

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// genRoster draws n distinct node ids (realistic pod names or arbitrary
// strings) and the placement shape.
func genRoster(t *rapid.T, minN, maxN int) []Member {
	n := rapid.IntRange(minN, maxN).Draw(t, "n")
	ids := rapid.SliceOfNDistinct(rapid.OneOf(
		rapid.Custom(func(t *rapid.T) string {
			return fmt.Sprintf("imnode-%d", rapid.IntRange(0, 99).Draw(t, "ordinal"))
		}),
		rapid.StringMatching(`[a-z0-9.-]{1,20}`),
	), n, n, rapid.ID[string]).Draw(t, "ids")
	ms := make([]Member, n)
	for i, id := range ids {
		ms[i] = Member{ID: id, State: StateActive}
	}
	return ms
}

// withRandomStates gives every member a random lifecycle state.
func withRandomStates(t *rapid.T, ms []Member) []Member {
	out := slices.Clone(ms)
	for i := range out {
		out[i].State = State(rapid.IntRange(int(StateJoining), int(StateLeft)).Draw(t, "state"))
	}
	return out
}

func TestRingPropertyOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := withRandomStates(t, genRoster(t, 0, 12))
		perm := rapid.Permutation(ms).Draw(t, "perm")
		cfg := Config{Shards: rapid.IntRange(1, 300).Draw(t, "shards"), ReplicationFactor: rapid.IntRange(1, 5).Draw(t, "r")}
		a := mustNew(t, cfg, 1, ms)
		b := mustNew(t, cfg, 1, perm)
		for s := range cfg.Shards {
			if !slices.Equal(a.Replicas(s), b.Replicas(s)) {
				t.Fatalf("shard %d: %v != %v", s, a.Replicas(s), b.Replicas(s))
			}
		}
		if a.Signature() != b.Signature() {
			t.Fatal("signature depends on input order")
		}
		for s := range cfg.Shards {
			for _, id := range a.Replicas(s) {
				if !a.State(id).Placed() {
					t.Fatalf("shard %d: replica %s in state %v", s, id, a.State(id))
				}
			}
		}
	})
}

// TestRingPropertyBalance: every placed node holds floor or ceil of S*R/N
// replicas and of S/N coordinator slots (the first replica). The bound is
// stricter than "a few percent": at S=256, R=3, N=10 the spread is 76..77.
func TestRingPropertyBalance(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genRoster(t, 3, 10)
		r := rapid.IntRange(1, 3).Draw(t, "r")
		rg := mustNew(t, Config{Shards: DefaultShards, ReplicationFactor: r}, 1, ms)
		n := len(ms)
		total, first := map[string]int{}, map[string]int{}
		for s := range DefaultShards {
			reps := rg.Replicas(s)
			first[reps[0]]++
			for _, id := range reps {
				total[id]++
			}
		}
		checkSpread(t, "replicas", total, DefaultShards*r, n)
		checkSpread(t, "coordinators", first, DefaultShards, n)
	})
}

func checkSpread(t *rapid.T, what string, got map[string]int, sum, n int) {
	lo, hi := sum/n, (sum+n-1)/n
	for id, c := range got {
		if c < lo || c > hi {
			t.Fatalf("%s: node %s holds %d, want within [%d, %d]", what, id, c, lo, hi)
		}
	}
	if len(got) != n {
		t.Fatalf("%s: %d nodes hold some, want all %d", what, len(got), n)
	}
}

// maxMoveFactor bounds replica moves relative to the minimum: a join must
// move at least S*R/(N+1) replicas to the new node, a leave S*R/N away from
// the leaving one. Balanced placement pays for its exact balance with some
// extra moves (measured 1.0-1.6x for N=3..12); 1.75x plus a small constant
// keeps the property meaningful ("about R/N") without flaking.
const maxMoveFactor = 1.75

func TestRingPropertyMinimalMovement(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genRoster(t, 4, 11)
		cfg := DefaultConfig()
		join, rest := ms[0], ms[1:]
		small := mustNew(t, cfg, 1, rest)
		big := mustNew(t, cfg, 2, ms)
		n := len(ms)
		minimal := float64(cfg.Shards*cfg.ReplicationFactor) / float64(n)

		joinMoves, _ := Diff(small, big)
		leaveMoves, _ := Diff(big, small)
		for _, tc := range []struct {
			name  string
			moves []Move
		}{{"join", joinMoves}, {"leave", leaveMoves}} {
			moved := MovedReplicas(tc.moves)
			if float64(moved) > maxMoveFactor*minimal+8 {
				t.Fatalf("%s of %s with N=%d moved %d replicas, minimal %.1f", tc.name, join.ID, n, moved, minimal)
			}
		}
		// The joining node gets exactly its fair share.
		got := MovedReplicasTo(joinMoves, join.ID)
		if math.Abs(float64(got)-minimal) > 1 {
			t.Fatalf("joining node got %d replicas, want about %.1f", got, minimal)
		}
	})
}

// MovedReplicasTo counts the replicas moves add to node id.
func MovedReplicasTo(moves []Move, id string) int {
	n := 0
	for _, m := range moves {
		if slices.Contains(m.Added, id) {
			n++
		}
	}
	return n
}

// TestRingPropertyDownNodeMovesNothing: liveness is not membership. A down
// node keeps every replica; only shards it coordinated get another
// coordinator, and that coordinator is already a replica.
func TestRingPropertyDownNodeMovesNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genRoster(t, 3, 10)
		rg := mustNew(t, DefaultConfig(), 1, ms)
		down := rapid.SampledFrom(ms).Draw(t, "down").ID
		live := func(id string) bool { return id != down }
		for s := range rg.Shards() {
			reps := rg.Replicas(s)
			c, ok := rg.Coordinator(s, live)
			if !ok || c == down || !slices.Contains(reps, c) {
				t.Fatalf("shard %d: coordinator %q (ok %v) with %s down, replicas %v", s, c, ok, down, reps)
			}
			if reps[0] != down && c != reps[0] {
				t.Fatalf("shard %d: coordinator changed from %s to %s though it is live", s, reps[0], c)
			}
		}
	})
}

func TestRingPropertyShardInRange(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		shards := rapid.IntRange(1, MaxShards).Draw(t, "shards")
		app, id := rapid.String().Draw(t, "app"), rapid.String().Draw(t, "id")
		for _, s := range []int{ConversationShard(shards, app, id), ClientShard(shards, app, id)} {
			if s < 0 || s >= shards {
				t.Fatalf("shard %d out of [0, %d)", s, shards)
			}
		}
	})
}

// TestRingShardDistribution: conversation ids spread evenly over shards
// (chi-square-ish bound on the max bucket).
func TestRingShardDistribution(t *testing.T) {
	counts := make([]int, DefaultShards)
	const keys = 256 * 400
	for i := range keys {
		counts[ConversationShard(DefaultShards, "app", fmt.Sprintf("conv-%d", i))]++
	}
	for s, c := range counts {
		// mean 400, sd 20: 6 sd is far outside chance.
		if c < 280 || c > 520 {
			t.Fatalf("shard %d holds %d of %d keys", s, c, keys)
		}
	}
}
