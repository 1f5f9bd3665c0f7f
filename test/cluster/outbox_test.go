package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// coordinatedBy returns the shards nd coordinates, as its admin API
// reports them.
func coordinatedBy(ctx context.Context, t *testing.T, nd *harness.Node) map[int]bool {
	t.Helper()
	st, err := nd.Admin().Shards(ctx)
	mustNoErr(t, err)
	out := map[int]bool{}
	for _, s := range st.Shards {
		if s.Coordinator {
			out[s.Shard] = true
		}
	}
	return out
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
	harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(coordinatedBy(ctx, t, victim)) == 0 {
			return fmt.Errorf("%s coordinates no shard yet", victim.ID())
		}
		return nil
	})
	onVictim := coordinatedBy(ctx, t, victim)

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
	harness.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		list, err := jerry.cl.Query().Limit(100).Find(ctx)
		if err != nil {
			return err
		}
		if got := convIDs(list); !slices.Equal(got, []string{conv.ID()}) {
			return fmt.Errorf("the member's conversations are %v, want [%s]", got, conv.ID())
		}
		return nil
	})
}
