package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterKilledNodeClientsReconnect: with R=3, W=2, a node is killed
// with SIGKILL while two members send; the clients of the killed node
// reconnect to another node on their own and go on; messages sent after
// the reconnect reach everybody; no acknowledged message is missing from
// history on any node.
func TestClusterKilledNodeClientsReconnect(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{ReplicationFactor: 3, WriteQuorum: 2})
	ctx := testCtx(t)
	victim, n0, n2 := c.Node(1), c.Node(0), c.Node(2)
	// REST (missed-notification replay) goes to a node that stays up: the
	// client takes a single Server URL.
	tom := connect(t, c, victim, n0, "Tom")
	jerry := connect(t, c, n0, n0, "Jerry")
	mary := connect(t, c, n2, n0, "Mary")

	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: ids(jerry, mary), Name: "failover", Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	for _, u := range []*user{tom, jerry, mary} {
		take(t, u, "membersjoined", membership(client.MembersJoined, cid))
	}

	// Tom (on the victim) and Jerry send continuously; the victim is killed
	// once both have 10 acknowledged messages.
	var (
		mu    sync.Mutex
		acked []*client.Message
		count = map[string]int{}
	)
	senderCtx, stopSenders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range []*user{tom, jerry} {
		wg.Go(func() {
			h := u.cl.Conversation(cid)
			for i := 0; senderCtx.Err() == nil; i++ {
				m, err := h.Send(senderCtx, client.NewText(fmt.Sprintf("%s %d", u.name, i)))
				if err != nil {
					if senderCtx.Err() == nil && !retryable(err) {
						t.Errorf("%s send %d: %v", u.name, i, err)
						return
					}
					// Not acknowledged: the socket dropped or the cluster
					// answered "retry". Wait for the reconnect.
					select {
					case <-senderCtx.Done():
					case <-time.After(50 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				acked = append(acked, m)
				count[u.name]++
				mu.Unlock()
			}
		})
	}
	harness.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if count["Tom"] < 10 || count["Jerry"] < 10 {
			return fmt.Errorf("acked so far %v", count)
		}
		return nil
	})
	victim.Kill(t)
	killed := time.Now()
	mu.Lock()
	killedAt := len(acked)
	mu.Unlock()
	t.Logf("killed %s after %d acknowledged messages", victim.ID(), killedAt)
	since := func() string { return time.Since(killed).Round(time.Millisecond).String() }

	take(t, tom, "disconnect", func(client.DisconnectEvent) bool { return true })
	take(t, tom, "reconnect", func(client.ReconnectEvent) bool { return true })
	if !tom.cl.Conn().Connected() {
		t.Fatal("Tom reports not connected after ReconnectEvent")
	}
	t.Logf("Tom reconnected %s after the kill", since())
	// Both keep sending through the failover for a while.
	mu.Lock()
	resumed := count["Tom"]
	mu.Unlock()
	harness.CheckFor(t, 25*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if count["Tom"] < resumed+10 {
			return fmt.Errorf("Tom has %d acknowledged messages since the reconnect", count["Tom"]-resumed)
		}
		return nil
	})
	stopSenders()
	wg.Wait()
	t.Logf("Tom had 10 more messages acknowledged %s after the kill", since())

	// After the reconnect: messages from the moved client and to it arrive.
	fromTom, retries := sendRetrying(ctx, t, tom.cl.Conversation(cid), "Tom after the failover")
	fromJerry, retries2 := sendRetrying(ctx, t, jerry.cl.Conversation(cid), "Jerry after the failover")
	if retries+retries2 > 0 {
		t.Logf("sends after the reconnect needed %d retries", retries+retries2)
	}
	acked = append(acked, fromTom, fromJerry)
	for _, u := range []*user{jerry, mary} {
		take(t, u, "Tom's message after the failover", messageID(fromTom.ID))
	}
	for _, u := range []*user{tom, mary} {
		take(t, u, "Jerry's message after the failover", messageID(fromJerry.ID))
	}
	t.Logf("messages after the failover delivered %s after the kill", since())

	// History on every live node has every acknowledged message, once, in
	// server-timestamp order.
	want := slices.Clone(acked)
	slices.SortFunc(want, func(a, b *client.Message) int { return a.Timestamp.Compare(b.Timestamp) })
	for _, u := range []*user{tom, jerry, mary} {
		checkHistory(t, u, cid, want)
	}
}

// TestClusterRestartedNodeCatchesUp: a node killed with SIGKILL misses the
// messages sent while it is down; restarted on its data directory it is
// ready only once caught up: its own store then holds every acknowledged
// message, it serves the whole history, and all replicas agree.
func TestClusterRestartedNodeCatchesUp(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})
	victim := c.Node(2)
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: ids(jerry), Name: "catch-up", Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	var acked []*client.Message
	for i := range 10 {
		m, _ := sendRetrying(ctx, t, conv, fmt.Sprintf("before %d", i))
		acked = append(acked, m)
	}
	victim.Kill(t)
	killed := time.Now()
	for i := range 20 {
		u := []*user{tom, jerry}[i%2]
		m, _ := sendRetrying(ctx, t, u.cl.Conversation(cid), fmt.Sprintf("while down %d", i))
		acked = append(acked, m)
	}
	victim.Restart(t)
	t.Logf("%s restarted and the cluster converged %v after the kill", victim.ID(), time.Since(killed).Round(time.Millisecond))

	// Ready means caught up: its own replica already has every message.
	dm, err := victim.Admin().DebugMessages(ctx, apps.DevAppID, cid)
	mustNoErr(t, err)
	stored := map[string]bool{}
	for _, m := range dm.Messages {
		stored[m.ID] = true
	}
	var missing []string
	for _, m := range acked {
		if !stored[m.ID] {
			missing = append(missing, m.ID)
		}
	}
	if !dm.Replica || len(missing) > 0 {
		t.Fatalf("%s is ready but its replica (replica=%v) misses %d of %d acknowledged messages: %v",
			victim.ID(), dm.Replica, len(missing), len(acked), missing)
	}
	checkHistory(t, connectID(t, c, victim, victim, "Jerry on the restarted node", jerry.id), cid, acked)
	c.WaitReplicasAgree(t, 20*time.Second)
}

// checkHistory reads the whole history through u and requires every
// message of want, once each, in want's order (unacknowledged messages
// that made it are allowed in between).
func checkHistory(t *testing.T, u *user, cid string, want []*client.Message) {
	t.Helper()
	ctx := testCtx(t)
	var all []*client.Message
	it := u.cl.Conversation(cid).MessageIterator(100)
	for {
		page, done, err := it.Next(ctx)
		if err != nil {
			t.Fatalf("%s history: %v", u.name, err)
		}
		all = append(page, all...)
		if done {
			break
		}
	}
	pos := map[string]int{}
	for i, m := range all {
		if _, dup := pos[m.ID]; dup {
			t.Fatalf("%s history has message %s twice", u.name, m.ID)
		}
		pos[m.ID] = i
	}
	last := -1
	var missing []string
	for _, m := range want {
		i, ok := pos[m.ID]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (%q at %d)", m.ID, m.Content, m.Timestamp.UnixMilli()))
			continue
		}
		if g := all[i]; !g.Timestamp.Equal(m.Timestamp) || g.From != m.From {
			t.Fatalf("%s history: %s at %v from %s, acknowledged at %v from %s", u.name, m.ID, g.Timestamp, g.From, m.Timestamp, m.From)
		}
		if i < last {
			t.Fatalf("%s history: %s out of order", u.name, m.ID)
		}
		last = i
	}
	if len(missing) > 0 {
		t.Fatalf("%s (connected to %s) history misses %d of %d acknowledged messages: %v", u.name, u.home.ID(), len(missing), len(want), missing)
	}
}

// tomAndJerry starts three nodes with R=3, W=2 (and opts' other fields)
// and connects Tom to node 0 and Jerry to node 1, both logged in through
// node 0.
func tomAndJerry(t *testing.T, opts harness.Options) (*harness.Cluster, context.Context, *user, *user) {
	t.Helper()
	opts.ReplicationFactor, opts.WriteQuorum = 3, 2
	c := harness.Start(t, 3, opts)
	n0 := c.Node(0)
	return c, testCtx(t), connect(t, c, n0, n0, "Tom"), connect(t, c, c.Node(1), n0, "Jerry")
}

// convCoordinatedElsewhere creates conversations of owner with member
// until one is coordinated by a node neither of them is connected to, and
// returns it and that node (the preferred coordinator, which takes the
// lease in the background).
func convCoordinatedElsewhere(ctx context.Context, t *testing.T, c *harness.Cluster, owner, member *user, name string) (string, *harness.Node) {
	t.Helper()
	return convCoordinatedBy(ctx, t, c, owner, member, name, func(coord *harness.Node) bool {
		return coord != owner.home && coord != member.home
	})
}

// convCoordinatedBy creates conversations of owner with member until one is
// coordinated by a node accept accepts, and returns it and that node.
func convCoordinatedBy(ctx context.Context, t *testing.T, c *harness.Cluster, owner, member *user, name string,
	accept func(coord *harness.Node) bool) (string, *harness.Node) {
	t.Helper()
	for i := range 40 {
		conv, err := owner.cl.CreateConversation(ctx, client.CreateOptions{Members: ids(member), Name: fmt.Sprintf("%s %d", name, i)})
		mustNoErr(t, err)
		cid := conv.ID()
		take(t, member, "membersjoined", membership(client.MembersJoined, cid))
		var coord *harness.Node
		harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if coord = coordinatorOf(ctx, t, c, cid); coord == nil {
				return fmt.Errorf("no coordinator of %s yet", cid)
			}
			return nil
		})
		if accept(coord) {
			return cid, coord
		}
	}
	t.Fatalf("no conversation with the wanted coordinator in 40 tries")
	return "", nil
}
