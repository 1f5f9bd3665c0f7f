package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// heldBy returns the shards nd replicates and whether it coordinates every
// one of them, as its admin API reports them.
func heldBy(ctx context.Context, t *testing.T, nd *harness.Node) (map[int]bool, bool) {
	t.Helper()
	st, err := nd.Admin().Shards(ctx)
	mustNoErr(t, err)
	out, all := map[int]bool{}, true
	for _, s := range st.Shards {
		out[s.Shard] = true
		all = all && s.Coordinator
	}
	return out, all
}

// TestClusterAddWhileMemberShardDown: with one replica per shard, the node
// holding an added member's client shard is paused (SIGSTOP). conv/add at
// the conversation's coordinator still answers and the conversation goes
// on (the member's index entry waits in the conversation's outbox instead
// of holding the conversation's lock); once the node runs again, the
// member finds the conversation among its own.
func TestClusterAddWhileMemberShardDown(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{ReplicationFactor: 1, WriteQuorum: 1})
	ctx := testCtx(t)
	n0, victim := c.Node(0), c.Node(2)
	shards := c.Options().Shards
	// With one replica a shard lives on one node only; wait until each
	// coordinates its own.
	var onVictim map[int]bool
	harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, nd := range c.Running() {
			held, all := heldBy(ctx, t, nd)
			if !all {
				return fmt.Errorf("%s does not coordinate all of its shards yet", nd.ID())
			}
			if nd == victim {
				onVictim = held
			}
		}
		if len(onVictim) == 0 {
			return fmt.Errorf("%s holds no shard", victim.ID())
		}
		return nil
	})

	// Tom and his conversation away from the victim.
	var tom *user
	for tom == nil || onVictim[ring.ClientShard(shards, apps.DevAppID, tom.id)] {
		tom = connect(t, c, n0, n0, "Tom")
	}
	var conv *client.Conversation
	for i := 0; conv == nil || onVictim[ring.ConversationShard(shards, apps.DevAppID, conv.ID())]; i++ {
		if i == 40 {
			t.Fatalf("no conversation away from %s in 40 tries", victim.ID())
		}
		var err error
		conv, err = tom.cl.CreateConversation(ctx, client.CreateOptions{Name: fmt.Sprintf("outbox %d", i), Unique: false})
		mustNoErr(t, err)
	}
	// A member whose client shard is on the victim.
	member := uid("Jerry")
	for !onVictim[ring.ClientShard(shards, apps.DevAppID, member)] {
		member = uid("Jerry")
	}

	victim.Pause(t)
	paused := true
	defer func() {
		if paused {
			victim.Resume(t)
		}
	}()
	start := time.Now()
	res, err := conv.Add(ctx, []string{member})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{member}) {
		t.Fatalf("add = %+v", res)
	}
	t.Logf("add answered in %v with the member's shard paused", time.Since(start).Round(time.Millisecond))
	if _, err := conv.Send(ctx, client.NewText("while the member's shard is paused")); err != nil {
		t.Fatalf("send after the add: %v", err)
	}
	victim.Resume(t)
	paused = false

	jerry := connectID(t, c, n0, n0, "Jerry", member)
	awaitOnlyConversation(ctx, t, jerry, conv.ID(), 20*time.Second)
}

// awaitOnlyConversation waits until u's own conversations (its index) are
// exactly cid.
func awaitOnlyConversation(ctx context.Context, t *testing.T, u *user, cid string, within time.Duration) {
	t.Helper()
	harness.CheckFor(t, within, 50*time.Millisecond, func() error {
		list, err := u.cl.Query().Limit(100).Find(ctx)
		if err != nil {
			return err
		}
		if got := convIDs(list); !slices.Equal(got, []string{cid}) {
			return fmt.Errorf("%s's conversations are %v, want [%s]", u.name, got, cid)
		}
		return nil
	})
}

// deleteMessageREST deletes message m through nd's server API.
func deleteMessageREST(ctx context.Context, nd *harness.Node, m *client.Message) error {
	url := fmt.Sprintf("%s/1.2/rtm/conversations/%s/messages/%s?timestamp=%d", nd.ServerURL(), m.ConversationID, m.ID, m.Timestamp.UnixMilli())
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-LC-Id", apps.DevAppID)
	req.Header.Set("X-LC-Key", apps.DevMasterKey+",master")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("DELETE %s: %s %s", url, resp.Status, body)
	}
	return nil
}

// TestClusterServerDeleteRacesEdit: the server API deletes a message through
// one node while its sender edits it through another, and the
// conversation's coordinator is a third. Both run at the coordinator,
// under the conversation's lock, one after the other: whatever the order,
// the message stays deleted (an edit after the delete finds no message).
func TestClusterServerDeleteRacesEdit(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{})
	ctx := testCtx(t)
	nodes := c.Running()
	tom := connect(t, c, nodes[0], nodes[0], "Tom")
	var conv *client.Conversation
	var coord *harness.Node
	for i := 0; coord == nil || coord == nodes[0] || coord == nodes[1]; i++ {
		if i == 40 {
			t.Fatal("no conversation coordinated by the third node in 40 tries")
		}
		var err error
		conv, err = tom.cl.CreateConversation(ctx, client.CreateOptions{Name: fmt.Sprintf("race %d", i), Unique: false})
		mustNoErr(t, err)
		harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if coord = coordinatorOf(ctx, t, c, conv.ID()); coord == nil {
				return fmt.Errorf("no coordinator of %s yet", conv.ID())
			}
			return nil
		})
	}
	const rounds = 30
	edits := 0
	for i := range rounds {
		m, err := conv.Send(ctx, client.NewText(fmt.Sprintf("race %d", i)))
		mustNoErr(t, err)
		var wg sync.WaitGroup
		var delErr, editErr error
		wg.Go(func() { delErr = deleteMessageREST(ctx, nodes[1], m) })
		wg.Go(func() { _, editErr = conv.UpdateMessage(ctx, m, client.NewText(fmt.Sprintf("edited %d", i))) })
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: %v", i, delErr)
		}
		if editErr == nil {
			edits++
		}
	}
	history, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 100})
	mustNoErr(t, err)
	for _, m := range history {
		t.Errorf("message %s (%q) survived its delete", m.ID, m.Content)
	}
	t.Logf("%d of %d edits ran before their delete", edits, rounds)
}

// coordinators waits until every shard has a coordinator among the running
// nodes and returns them by shard.
func coordinators(ctx context.Context, t *testing.T, c *harness.Cluster) map[int]*harness.Node {
	t.Helper()
	var out map[int]*harness.Node
	harness.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		out = map[int]*harness.Node{}
		for _, nd := range c.Running() {
			st, err := nd.Admin().Shards(ctx)
			if err != nil {
				return err
			}
			for _, s := range st.Shards {
				if s.Coordinator {
					out[s.Shard] = nd
				}
			}
		}
		if len(out) < c.Options().Shards {
			return fmt.Errorf("%d of %d shards coordinated", len(out), c.Options().Shards)
		}
		return nil
	})
	return out
}

// TestClusterOutboxMovesWithTheLease: the coordinator of a conversation
// cannot reach the coordinator of an added member's client shard (a
// partition between the two), so the member's index entry waits in the
// conversation's outbox, replicated with the conversation's shard. The
// conversation's coordinator is then killed: the node that takes the
// shard's lease over applies the waiting entry, and the member finds the
// conversation among its own.
func TestClusterOutboxMovesWithTheLease(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{FaultInjection: true})
	ctx := testCtx(t)
	shards := c.Options().Shards
	home := c.Node(0)
	tom := connect(t, c, home, home, "Tom")
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Name: "outbox lease", Unique: false})
	mustNoErr(t, err)
	coord := coordinators(ctx, t, c)
	a := coord[ring.ConversationShard(shards, apps.DevAppID, conv.ID())]
	// A member whose client shard is coordinated by another node than
	// the conversation's coordinator and Tom's gateway.
	var b *harness.Node
	member := ""
	for i := 0; b == nil || b == a || b == home; i++ {
		if i == 1000 {
			t.Fatalf("no client shard coordinated by a node other than %s and %s", a.ID(), home.ID())
		}
		member = uid("Jerry")
		b = coord[ring.ClientShard(shards, apps.DevAppID, member)]
	}
	var third *harness.Node
	for _, nd := range c.Running() {
		if nd != a && nd != b {
			third = nd
		}
	}
	c.Partition(t, []*harness.Node{a}, []*harness.Node{b})

	res, err := conv.Add(ctx, []string{member})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{member}) {
		t.Fatalf("add = %+v", res)
	}
	jerry := connectID(t, c, third, third, "Jerry", member)
	list, err := jerry.cl.Query().Limit(100).Find(ctx)
	mustNoErr(t, err)
	if len(list) != 0 {
		t.Fatalf("the member's index reached its shard across the partition: %v", convIDs(list))
	}

	a.Kill(t)
	killed := time.Now()
	awaitOnlyConversation(ctx, t, jerry, conv.ID(), 30*time.Second)
	t.Logf("the member's index arrived %v after the coordinator was killed", time.Since(killed).Round(time.Millisecond))
}
