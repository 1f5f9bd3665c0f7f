package presence

import (
	"slices"
	"sync"
	"testing"
	"time"

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

// TestPresenceRegistryForgetDead: the entries of a gateway that left the
// roster or is unknown are dropped at once; those of a gateway declared
// dead count as offline at once but route pushes for deadGatewayGrace (it
// may only have stalled), and are dropped after it.
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

	const t0 = int64(1000 * time.Second)
	r.forgetDead(snap, t0)
	if g := sortedGateways(r, "app", "alice"); !slices.Equal(g, []string{"n1", "n2"}) {
		t.Fatalf("alice after forgetDead = %v, want [n1 n2]", g)
	}
	if g := r.gateways("app", "bob"); len(g) != 0 {
		t.Fatalf("bob after forgetDead = %v", g)
	}
	if got := r.online("app", []string{"alice", "bob", "carol"}); !slices.Equal(got, []string{"alice", "carol"}) {
		t.Fatalf("online after forgetDead = %v", got)
	}
	routes := func(now int64) map[string][]string {
		t.Helper()
		byNode, _ := r.route("app", []string{"bob"}, now)
		return byNode
	}
	if got := routes(t0 + int64(deadGatewayGrace) - 1); len(got) != 1 || !slices.Equal(got["n3"], []string{"bob"}) {
		t.Fatalf("bob's pushes within the grace go to %v, want n3 (dead, maybe stalled) only", got)
	}
	if got := routes(t0 + int64(deadGatewayGrace)); len(got) != 0 {
		t.Fatalf("bob's pushes after the grace go to %v", got)
	}
	// A later roster within the grace keeps n3's entries and the time it
	// was first seen dead; one after the grace drops them.
	r.forgetDead(snap, t0+int64(deadGatewayGrace)/2)
	if _, ok := r.m[regKey("app", "bob")]["n3"]; !ok {
		t.Fatal("n3's entry for bob dropped within the grace")
	}
	r.forgetDead(snap, t0+int64(deadGatewayGrace))
	if _, ok := r.m[regKey("app", "bob")]; ok {
		t.Fatal("entry kept for bob after the grace")
	}
	// A gateway that comes back re-registers.
	r.set("app", "bob", "n3", 1)
	snap.Members[2].Live = true
	r.forgetDead(snap, t0+int64(deadGatewayGrace))
	if g := r.gateways("app", "bob"); !slices.Equal(g, []string{"n3"}) {
		t.Fatalf("bob after n3 re-registered = %v", g)
	}
}

// TestPresenceRegistryStalledGateway: a gateway declared dead that comes
// back within the grace, the same process (same boot id), routes its
// clients' pushes again at once, before it re-registers; one that comes
// back restarted (a new boot id) drops them with its first registration.
func TestPresenceRegistryStalledGateway(t *testing.T) {
	reg := func(boot uint64) []byte {
		var e wire.Enc
		e.U64(0)
		e.U64(boot)
		return e.B
	}
	r := newTestRegistry()
	if err := r.apply(nil, "n2", &wire.Dec{B: reg(5)}); err != nil {
		t.Fatal(err)
	}
	r.set("app", "alice", "n2", 1)
	r.forgetDead(liveSnap("n1", "n2"), 0)
	r.forgetDead(liveSnap("n1"), 1)
	if got := r.online("app", []string{"alice"}); len(got) != 0 {
		t.Fatalf("alice online on a dead gateway: %v", got)
	}
	if revived := r.forgetDead(liveSnap("n1", "n2"), 2); !slices.Equal(revived, []string{"n2"}) {
		t.Fatalf("revived %v, want [n2]", revived)
	}
	if byNode, _ := r.route("app", []string{"alice"}, 2); !slices.Equal(byNode["n2"], []string{"alice"}) {
		t.Fatalf("alice routed to %v once n2 is back", byNode)
	}
	if err := r.apply(nil, "n2", &wire.Dec{B: reg(5)}); err != nil {
		t.Fatal(err)
	}
	if got := r.online("app", []string{"alice"}); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("online after the same process re-registered = %v", got)
	}
	if err := r.apply(nil, "n2", &wire.Dec{B: reg(6)}); err != nil {
		t.Fatal(err)
	}
	if got := r.online("app", []string{"alice"}); len(got) != 0 {
		t.Fatalf("online after n2 came back restarted = %v", got)
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
					r.forgetDead(snap, 0)
				}
			}
		})
	}
	wg.Wait()
	r.forgetDead(snap, 0)
	for k, e := range r.m {
		if _, ok := e["n2"]; ok || len(e) == 0 {
			t.Fatalf("entry %q = %v after forgetDead", k, e)
		}
	}
}
