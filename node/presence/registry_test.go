package presence

import (
	"slices"
	"sync"
	"testing"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/wire"
)

func newTestRegistry() *registry {
	r := &registry{}
	r.init()
	return r
}

func sortedGateways(r *registry, app, client string) []string {
	return slices.Sorted(slices.Values(r.gateways(app, client)))
}

func TestPresenceRegistrySet(t *testing.T) {
	r := newTestRegistry()
	if g := r.gateways("app", "alice"); len(g) != 0 {
		t.Fatalf("gateways of an unknown client = %v", g)
	}
	r.set("app", "alice", "n1", 2)
	r.set("app", "alice", "n2", 1)
	r.set("app", "bob", "n2", 1)
	r.set("other", "carol", "n3", 1)
	if g := sortedGateways(r, "app", "alice"); !slices.Equal(g, []string{"n1", "n2"}) {
		t.Fatalf("gateways of alice = %v", g)
	}
	// Apps are separate namespaces.
	if g := r.gateways("other", "alice"); len(g) != 0 {
		t.Fatalf("alice in another app = %v", g)
	}

	// A count replaces the previous one; zero or less removes the gateway.
	r.set("app", "alice", "n1", 5)
	r.set("app", "alice", "n2", 0)
	if g := sortedGateways(r, "app", "alice"); !slices.Equal(g, []string{"n1"}) {
		t.Fatalf("gateways of alice after n2 left = %v", g)
	}
	r.set("app", "alice", "n1", -1)
	if g := r.gateways("app", "alice"); len(g) != 0 {
		t.Fatalf("gateways of alice after all left = %v", g)
	}
	if _, ok := r.m[regKey("app", "alice")]; ok {
		t.Fatal("empty entry kept for alice")
	}
	// Removing what is not there is a no-op.
	r.set("app", "nobody", "n1", 0)
	r.set("app", "bob", "n9", 0)
	if len(r.m) != 2 || !slices.Equal(r.gateways("app", "bob"), []string{"n2"}) {
		t.Fatalf("registry after no-op removals = %v", r.m)
	}
}

func TestPresenceRegistryOnline(t *testing.T) {
	r := newTestRegistry()
	r.set("app", "alice", "n1", 1)
	r.set("app", "bob", "n2", 3)
	r.set("app", "gone", "n2", 1)
	r.set("app", "gone", "n2", 0)
	r.set("other", "carol", "n1", 1)
	got := r.online("app", []string{"carol", "bob", "gone", "alice", "nobody"})
	if !slices.Equal(got, []string{"bob", "alice"}) {
		t.Fatalf("online = %v, want [bob alice] (input order)", got)
	}
	if got := r.online("app", nil); len(got) != 0 {
		t.Fatalf("online of nobody = %v", got)
	}
}

func TestPresenceRegistryForgetDead(t *testing.T) {
	member := func(id string, live bool) membership.Member {
		return membership.Member{Meta: membership.Meta{ID: id, State: ring.StateActive, Seq: 1}, Live: live}
	}
	// Members sorted by id, as a Snapshot requires. Self (n1) is not live
	// in its own snapshot, n3 is dead, n4 left gossip and n5 is unknown.
	snap := &membership.Snapshot{
		Self:  "n1",
		Epoch: 4,
		Members: []membership.Member{
			member("n1", false), member("n2", true), member("n3", false),
			{Meta: membership.Meta{ID: "n4", State: ring.StateLeft, Seq: 2}},
		},
	}
	r := newTestRegistry()
	for _, node := range []string{"n1", "n2", "n3", "n4", "n5"} {
		r.set("app", "alice", node, 1)
	}
	r.set("app", "bob", "n3", 2)
	r.set("app", "bob", "n5", 1)
	r.set("app", "carol", "n2", 1)

	r.forgetDead(snap)
	if g := sortedGateways(r, "app", "alice"); !slices.Equal(g, []string{"n1", "n2"}) {
		t.Fatalf("alice after forgetDead = %v, want [n1 n2]", g)
	}
	if g := r.gateways("app", "bob"); len(g) != 0 {
		t.Fatalf("bob after forgetDead = %v", g)
	}
	if _, ok := r.m[regKey("app", "bob")]; ok {
		t.Fatal("empty entry kept for bob")
	}
	if got := r.online("app", []string{"alice", "bob", "carol"}); !slices.Equal(got, []string{"alice", "carol"}) {
		t.Fatalf("online after forgetDead = %v", got)
	}
	// A gateway that comes back re-registers.
	r.set("app", "bob", "n3", 1)
	if g := r.gateways("app", "bob"); !slices.Equal(g, []string{"n3"}) {
		t.Fatalf("bob after n3 re-registered = %v", g)
	}
}

// TestPresenceRegistryApply decodes wire.Register batches as register and
// reregister encode them (entries without a tag need no Cluster).
func TestPresenceRegistryApply(t *testing.T) {
	batch := func(entries ...[3]any) []byte {
		var e wire.Enc
		e.U64(uint64(len(entries)))
		for _, en := range entries {
			e.Str("app")
			e.Str(en[0].(string))
			e.U64(uint64(en[1].(int)))
			e.Str("")
			e.Str(en[2].(string))
			e.U64(0)
		}
		return e.B
	}
	r := newTestRegistry()
	if err := r.apply(nil, "n2", &wire.Dec{B: batch([3]any{"alice", 2, ""}, [3]any{"bob", 1, "dev"})}); err != nil {
		t.Fatal(err)
	}
	if got := r.online("app", []string{"alice", "bob"}); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("online after register = %v", got)
	}
	if err := r.apply(nil, "n2", &wire.Dec{B: batch([3]any{"alice", 0, ""})}); err != nil {
		t.Fatal(err)
	}
	if got := r.online("app", []string{"alice", "bob"}); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("online after unregister = %v", got)
	}
	b := batch([3]any{"carol", 1, ""})
	for n := range len(b) {
		if err := r.apply(nil, "n3", &wire.Dec{B: b[:n]}); err == nil {
			t.Fatalf("prefix %d/%d of a registration applied without error", n, len(b))
		}
	}
	if got := r.online("app", []string{"carol"}); len(got) != 0 {
		t.Fatal("truncated registration registered carol")
	}
}

func TestPresenceRegistryConcurrent(t *testing.T) {
	r := newTestRegistry()
	snap := &membership.Snapshot{Self: "n0", Members: []membership.Member{{Meta: membership.Meta{ID: "n1"}, Live: true}}}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				client := string(rune('a' + i%5))
				r.set("app", client, []string{"n0", "n1", "n2"}[w%3], i%3)
				_ = r.gateways("app", client)
				_ = r.online("app", []string{client})
				if i%50 == 0 {
					r.forgetDead(snap)
				}
			}
		})
	}
	wg.Wait()
	r.forgetDead(snap)
	for k, e := range r.m {
		if _, ok := e["n2"]; ok || len(e) == 0 {
			t.Fatalf("entry %q = %v after forgetDead", k, e)
		}
	}
}
