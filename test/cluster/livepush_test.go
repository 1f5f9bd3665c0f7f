package cluster_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// Live pushes across node restarts and partitions: Tom sends a steady
// stream of messages to Jerry while a node goes down and comes back, and
// Jerry, whose socket stays open, must receive every acknowledged message
// on it, in order and once. A push Jerry misses is shown to him only at
// his next reconnect or history sync: a user-visible gap.

// livePace is the pause between two of Tom's sends: a steady stream (about
// 30 a second on a loaded 2-core machine), not a flood that would fill
// Jerry's socket queue while a path is held up.
const livePace = 20 * time.Millisecond

// liveAfter is how many sends must be acknowledged after the node came
// back and took its conversations back: enough to span the restarted
// registry's warm-up (twice the 2 s peer request timeout of the local
// profile) at livePace.
const liveAfter = 150

// liveSetup is a cluster of three nodes (R=3): Tom connected to node X,
// Jerry to node Y, and their conversation coordinated by node Z, which
// also comes first among the registry replicas of Jerry's client shard.
// With R=3 every node replicates every client shard, so a push goes
// through the registry of the conversation's coordinator: Z's.
type liveSetup struct {
	c          *harness.Cluster
	x, y, z    *harness.Node
	tom, jerry *user
	cid        string
}

func startLive(t *testing.T, opts harness.Options) *liveSetup {
	t.Helper()
	opts.ReplicationFactor, opts.WriteQuorum = 3, 2
	c := harness.Start(t, 3, opts)
	ls := &liveSetup{c: c, x: c.Node(0), y: c.Node(1), z: c.Node(2)}
	ls.tom = connect(t, c, ls.x, ls.x, "Tom")
	ls.jerry = connectID(t, c, ls.y, ls.y, "Jerry", registryFirst(t, c, ls.z, "Jerry"))
	ls.cid, _ = convCoordinatedBy(testCtx(t), t, c, ls.tom, ls.jerry, "live", func(coord *harness.Node) bool {
		return coord == ls.z
	})
	return ls
}

// awaitCoordinator waits until nd coordinates the conversation again (the
// preferred replica takes its leases back once it caught up), so that the
// sends after it go through nd's registry.
func (ls *liveSetup) awaitCoordinator(t *testing.T, nd *harness.Node) {
	t.Helper()
	ctx := testCtx(t)
	harness.CheckFor(t, 45*time.Second, 20*time.Millisecond, func() error {
		if got := coordinatorOf(ctx, t, ls.c, ls.cid); got != nd {
			return fmt.Errorf("conversation coordinated by %v, want %s", got, nd.ID())
		}
		return nil
	})
}

// liveResult is what Jerry received of the acknowledged messages.
type liveResult struct {
	acked  []*client.Message
	missed []string // ids of acked messages never received live
	dups   []string // ids received more than once
	order  []string // out-of-order receptions, described
}

func (r liveResult) String() string {
	return fmt.Sprintf("%d acknowledged, %d missed live, %d duplicated, %d out of order",
		len(r.acked), len(r.missed), len(r.dups), len(r.order))
}

// liveMessages returns the messages of cid that u received on its session
// in order, those received before the first disconnect apart from those
// after it.
func liveMessages(u *user, cid string) (before, after []*client.Message, reconnected bool) {
	dropped := false
	for _, ev := range u.in.all() {
		switch e := ev.(type) {
		case client.DisconnectEvent:
			dropped = true
		case client.ReconnectEvent:
			reconnected = true
		case client.MessageEvent:
			if e.Message.ConversationID != cid {
				continue
			}
			if dropped {
				after = append(after, e.Message)
			} else {
				before = append(before, e.Message)
			}
		}
	}
	return before, after, reconnected
}

// compareLive checks got (received live, in arrival order) against want
// (acknowledged, in send order): missing, duplicated and reordered ids.
func compareLive(want, got []*client.Message) liveResult {
	r := liveResult{acked: want}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.ID]++
		if seen[m.ID] == 2 {
			r.dups = append(r.dups, m.ID)
		}
	}
	pos := map[string]int{}
	for i, m := range want {
		pos[m.ID] = i
		if seen[m.ID] == 0 {
			r.missed = append(r.missed, fmt.Sprintf("%s (%q)", m.ID, m.Content))
		}
	}
	last := -1
	for _, m := range got {
		i, ok := pos[m.ID]
		if !ok {
			continue // stored, but its send failed: no promise either way
		}
		if i < last {
			r.order = append(r.order, fmt.Sprintf("%q after %q", m.Content, want[last].Content))
		}
		last = max(last, i)
	}
	return r
}

// awaitLive waits until u received every message of want on its session
// (or the event timeout passed) and returns the comparison.
func awaitLive(t *testing.T, u *user, cid string, want []*client.Message, received func() []*client.Message) liveResult {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		r := compareLive(want, received())
		if len(r.missed) == 0 || time.Now().After(deadline) {
			return r
		}
		select {
		case <-u.in.signal:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkLive fails the test unless r is perfect.
func checkLive(t *testing.T, scenario string, r liveResult) {
	t.Helper()
	t.Logf("%s: %v", scenario, r)
	if len(r.missed)+len(r.dups)+len(r.order) == 0 {
		return
	}
	t.Errorf("%s: %v\nmissed: %s\nduplicated: %s\nout of order: %s", scenario, r,
		firstFew(r.missed), firstFew(r.dups), firstFew(r.order))
}

func firstFew(s []string) string {
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(" ... (%d more)", len(s)-10)
	}
	return strings.Join(s, ", ")
}

// runLive has Tom send steadily while fault runs, then until liveAfter
// more sends were acknowledged after Z coordinates the conversation again,
// and checks that Jerry, whose socket never dropped, received every
// acknowledged message live, in order and once.
func (ls *liveSetup) runLive(t *testing.T, scenario string, fault func()) {
	t.Helper()
	ctx := testCtx(t)
	s := startSenders(ctx, ls.cid, livePace, ls.tom)
	s.awaitEach(t, 30, 20*time.Second)
	fault()
	ls.awaitCoordinator(t, ls.z)
	s.awaitEach(t, liveAfter, 30*time.Second)
	acked, failed := s.finish()
	t.Logf("%s: %d sends failed (retryable, not acknowledged)", scenario, len(failed))
	r := awaitLive(t, ls.jerry, ls.cid, acked, func() []*client.Message {
		before, _, _ := liveMessages(ls.jerry, ls.cid)
		return before
	})
	if _, after, _ := liveMessages(ls.jerry, ls.cid); len(after) > 0 || slices.ContainsFunc(ls.jerry.in.all(),
		func(ev client.Event) bool { _, ok := ev.(client.DisconnectEvent); return ok }) {
		t.Errorf("%s: Jerry's session dropped (his gateway %s never stopped)", scenario, ls.y.ID())
	}
	logPresenceMetrics(t, ls.c, scenario)
	checkLive(t, scenario, r)
}

// logPresenceMetrics logs each running node's presence counters: whether
// a scenario went through the hand-on path and the re-registrations.
func logPresenceMetrics(t *testing.T, c *harness.Cluster, scenario string) {
	t.Helper()
	ctx := testCtx(t)
	for _, nd := range c.Running() {
		t.Logf("%s: %s hand-ons %v, re-registrations %v, relay drops %v", scenario, nd.ID(),
			metricValue(ctx, t, nd, "imnode_presence_handons_total"),
			metricValue(ctx, t, nd, "imnode_presence_reregistrations_total"),
			metricValue(ctx, t, nd, "imnode_presence_push_relay_drops_total"))
	}
}

// TestClusterLivePushRegistryKill: Z, the coordinator and first registry
// replica, is killed (SIGKILL) and started again on its data while Tom
// keeps sending. Its registry starts empty and refills from the gateways'
// re-registrations while it takes its conversations back.
func TestClusterLivePushRegistryKill(t *testing.T) {
	ls := startLive(t, harness.Options{})
	ls.runLive(t, "registry kill", func() {
		ls.z.Kill(t)
		ls.z.Restart(t)
	})
}

// TestClusterLivePushRegistryStop: the same with a graceful stop (SIGTERM:
// Z hands its leases over and says goodbye) and a start on its data.
func TestClusterLivePushRegistryStop(t *testing.T) {
	ls := startLive(t, harness.Options{})
	ls.runLive(t, "registry stop", func() {
		ls.z.Stop(t)
		ls.z.Restart(t)
	})
}

// TestClusterLivePushRegistryPartition: Z is cut off from X and Y until
// the conversation's lease moved to their side, then the partition heals.
// The cut is of the peer transport only (gossip goes on, as in a
// partition of the peer port): Z keeps its registry, and takes its
// conversations back once the partition healed.
func TestClusterLivePushRegistryPartition(t *testing.T) {
	ls := startLive(t, harness.Options{FaultInjection: true})
	ls.runLive(t, "registry partition", func() {
		ls.c.Partition(t, []*harness.Node{ls.z}, []*harness.Node{ls.x, ls.y})
		ctx := testCtx(t)
		harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			// The cut is of peer traffic (gossip goes on): the lease
			// moves once it ran out at Z.
			if got := coordinatorOf(ctx, t, ls.c, ls.cid); got == nil || got == ls.z {
				return fmt.Errorf("conversation coordinated by %v", got)
			}
			return nil
		})
		ls.c.Heal(t)
		ls.c.WaitConverged(t)
	})
}

// TestClusterLivePushGatewayRestart: Jerry's own gateway Y is killed and
// started again while Tom keeps sending. Jerry's client reconnects (to
// another node, Y being down) and re-logs in; every message sent once his
// session is open again must reach it live, and the ones sent while he was
// away are in history (the SDK's offline path): none is lost.
func TestClusterLivePushGatewayRestart(t *testing.T) {
	ls := startLive(t, harness.Options{})
	ctx := testCtx(t)
	s := startSenders(ctx, ls.cid, livePace, ls.tom)
	s.awaitEach(t, 30, 20*time.Second)
	ls.y.Kill(t)
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if _, _, ok := liveMessages(ls.jerry, ls.cid); !ok {
			return fmt.Errorf("Jerry has not reconnected yet")
		}
		return nil
	})
	// Every send that started after this point must reach the reopened
	// session (its registration is synchronous with the re-login); the one
	// in flight may have been stored before.
	s.mu.Lock()
	cutoff := len(s.acked) + 1
	s.mu.Unlock()
	ls.y.Restart(t)
	s.awaitEach(t, liveAfter, 30*time.Second)
	acked, failed := s.finish()
	t.Logf("gateway restart: %d sends failed (retryable, not acknowledged); live from send %d on", len(failed), cutoff)

	// Live: everything after the cutoff, on the session after the reconnect.
	r := awaitLive(t, ls.jerry, ls.cid, acked[cutoff:], func() []*client.Message {
		_, after, _ := liveMessages(ls.jerry, ls.cid)
		return after
	})
	checkLive(t, "gateway restart (after the reconnect)", r)
	// None lost: what was not received live is in Jerry's history.
	checkHistory(t, ls.jerry, ls.cid, acked)
	before, after, _ := liveMessages(ls.jerry, ls.cid)
	got := map[string]bool{}
	for _, m := range append(before, after...) {
		got[m.ID] = true
	}
	offline := 0
	for _, m := range acked {
		if !got[m.ID] {
			offline++
		}
	}
	t.Logf("gateway restart: %d of %d acknowledged messages reached Jerry through history only", offline, len(acked))
}

// TestClusterLivePushGatewayPause: Jerry's gateway Y stalls (SIGSTOP)
// until X and Z declare it dead, stays stalled a second longer and
// resumes, while Tom keeps sending. Jerry's socket stays open throughout
// (the client's liveness allows far longer), so every message must reach
// it live once Y runs again, in order and once: the registries keep
// routing to a gateway declared dead for a grace period, and the pushes
// wait in the peer connection to it.
func TestClusterLivePushGatewayPause(t *testing.T) {
	ls := startLive(t, harness.Options{})
	ctx := testCtx(t)
	seen := func(alive bool) func() error {
		return func() error {
			for _, nd := range []*harness.Node{ls.x, ls.z} {
				cs, err := nd.Admin().Cluster(ctx)
				if err != nil {
					return err
				}
				if m, ok := cs.Member(ls.y.ID()); !ok || m.Alive != alive {
					return fmt.Errorf("%s sees %s alive=%v, want %v", nd.ID(), ls.y.ID(), m.Alive, alive)
				}
			}
			return nil
		}
	}
	s := startSenders(ctx, ls.cid, livePace, ls.tom)
	s.awaitEach(t, 30, 20*time.Second)
	ls.y.Pause(t)
	t.Cleanup(func() { ls.y.Resume(t) })
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, seen(false))
	holdFor(time.Second)
	ls.y.Resume(t)
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, seen(true))
	s.awaitEach(t, liveAfter, 30*time.Second)
	acked, failed := s.finish()
	t.Logf("gateway pause: %d sends failed (retryable, not acknowledged)", len(failed))
	logPresenceMetrics(t, ls.c, "gateway pause")
	receivedLive(t, "gateway pause", ls.jerry, ls.cid, acked)
}
