package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// registryFirst returns a client id for name whose client shard's session
// registry is first on node (in placement order: the replica a push is
// relayed to while every replica is live and reachable).
func registryFirst(t *testing.T, c *harness.Cluster, node *harness.Node, name string) string {
	t.Helper()
	opts := c.Options()
	var members []ring.Member
	for _, nd := range c.Nodes() {
		members = append(members, ring.Member{ID: nd.ID(), State: ring.StateActive})
	}
	rg, err := ring.New(ring.Config{Shards: opts.Shards, ReplicationFactor: opts.ReplicationFactor}, 1, members)
	mustNoErr(t, err)
	for range 10000 {
		id := uid(name)
		if rg.Replicas(ring.ClientShard(opts.Shards, apps.DevAppID, id))[0] == node.ID() {
			return id
		}
	}
	t.Fatalf("no client id with its registry first on %s", node.ID())
	return ""
}

// pushPair starts three nodes and connects Tom to node 0 and Jerry to node
// 1, Jerry's session registry first on node 2, and makes a conversation of
// the two.
func pushPair(t *testing.T) (*harness.Cluster, *user, *user, *client.Conversation) {
	t.Helper()
	c := harness.Start(t, 3, harness.Options{})
	tom := connect(t, c, c.Node(0), c.Node(0), "Tom")
	jerry := connectID(t, c, c.Node(1), c.Node(1), "Jerry", registryFirst(t, c, c.Node(2), "Jerry"))
	conv, err := tom.cl.CreateConversation(testCtx(t), client.CreateOptions{Members: []string{jerry.id}})
	mustNoErr(t, err)
	take(t, jerry, "invited", membership(client.Invited, conv.ID()))
	return c, tom, jerry, conv
}

// pushed sends text in conv and waits for its push to u.
func pushed(t *testing.T, conv *client.Conversation, u *user, text string) {
	t.Helper()
	m, _ := sendRetrying(testCtx(t), t, conv, text)
	take(t, u, text, messageID(m.ID))
}

// TestClusterPushAfterRegistryRestart: Tom is connected to node 0, Jerry to
// node 1, and Jerry's session registry is first on node 2. Node 2 is
// killed and restarted at once; Jerry stays connected to node 1. The
// restarted registry starts empty and must learn Jerry's session again, so
// that Tom's next message is pushed to Jerry: in a conversation node 2
// coordinates, whose pushes go through node 2's registry (a coordinator
// that replicates the recipient's client shard uses its own).
func TestClusterPushAfterRegistryRestart(t *testing.T) {
	c, tom, jerry, conv := pushPair(t)
	pushed(t, conv, jerry, "before the restart")
	c.Node(2).Kill(t)
	c.Node(2).Restart(t)
	cid, _ := convCoordinatedBy(testCtx(t), t, c, tom, jerry, "registry restart", func(coord *harness.Node) bool {
		return coord == c.Node(2)
	})
	pushed(t, tom.cl.Conversation(cid), jerry, "after the restart")
}

// TestClusterPushAfterGatewayPause: Jerry's gateway (node 1) stalls
// (SIGSTOP) until the other nodes declare it dead, which drops its sessions
// from their registries, and resumes. Node 1 itself saw no member die, so
// nothing on its side changed; Jerry's socket stayed open. The registries
// must learn Jerry's session again, so that Tom's next message is pushed.
func TestClusterPushAfterGatewayPause(t *testing.T) {
	c, tom, jerry, conv := pushPair(t)
	ctx := testCtx(t)
	y := c.Node(1)
	alive := func(want bool) func() error {
		return func() error {
			for _, nd := range []*harness.Node{c.Node(0), c.Node(2)} {
				cs, err := nd.Admin().Cluster(ctx)
				if err != nil {
					return err
				}
				if m, ok := cs.Member(y.ID()); !ok || m.Alive != want {
					return fmt.Errorf("%s sees %s alive=%v, want %v", nd.ID(), y.ID(), m.Alive, want)
				}
			}
			return nil
		}
	}
	y.Pause(t)
	t.Cleanup(func() { y.Resume(t) })
	harness.CheckFor(t, 30*time.Second, 50*time.Millisecond, alive(false))
	y.Resume(t)
	harness.CheckFor(t, 30*time.Second, 50*time.Millisecond, alive(true))
	pushed(t, conv, jerry, "after the pause")
	// The same through a registry of another node than Jerry's gateway
	// (which never dropped its own sessions): the coordinator's.
	cid, _ := convCoordinatedBy(ctx, t, c, tom, jerry, "gateway pause", func(coord *harness.Node) bool {
		return coord != y
	})
	pushed(t, tom.cl.Conversation(cid), jerry, "after the pause, elsewhere")
}

// TestClusterPushAfterGatewayRestart: Jerry's gateway (node 1) is killed
// and restarted at once and Jerry reconnects to it; the registries must
// route Tom's next message to Jerry's new session.
func TestClusterPushAfterGatewayRestart(t *testing.T) {
	c, _, jerry, conv := pushPair(t)
	y := c.Node(1)
	y.Kill(t)
	_ = jerry.conn.Close()
	y.Restart(t)
	jerry = connectID(t, c, y, y, "Jerry", jerry.id)
	pushed(t, conv, jerry, "after the restart")
}

// TestClusterOfflineAfterGatewayRestart: Jerry's gateway (node 1) is killed
// and restarted at once, and Jerry does not come back. The registries must
// stop counting the sessions node 1 had before its restart: Jerry is
// reported offline (and so gets offline pushes), not online forever.
func TestClusterOfflineAfterGatewayRestart(t *testing.T) {
	c, tom, jerry, _ := pushPair(t)
	ctx := testCtx(t)
	online, err := tom.cl.OnlineStatus(ctx, []string{jerry.id})
	mustNoErr(t, err)
	if !slices.Equal(online, []string{jerry.id}) {
		t.Fatalf("online before the restart = %v, want [%s]", online, jerry.id)
	}
	_ = jerry.conn.Close()
	y := c.Node(1)
	y.Kill(t)
	y.Restart(t)
	harness.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		online, err := tom.cl.OnlineStatus(ctx, []string{jerry.id})
		if err != nil {
			return err
		}
		if len(online) != 0 {
			return fmt.Errorf("online after the restart = %v", online)
		}
		return nil
	})
}
