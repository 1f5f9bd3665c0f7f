package cluster_test

import (
	"fmt"
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

// TestClusterPushAfterRegistryRestart: Tom is connected to node 0, Jerry to
// node 1, and Jerry's session registry is first on node 2. Node 2 is
// killed and restarted at once; Jerry stays connected to node 1. The
// restarted registry starts empty and must learn Jerry's session again, so
// that Tom's next message is pushed to Jerry.
func TestClusterPushAfterRegistryRestart(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{})
	x, y, z := c.Node(0), c.Node(1), c.Node(2)
	ctx := testCtx(t)
	tom := connect(t, c, x, x, "Tom")
	jerry := connectID(t, c, y, y, "Jerry", registryFirst(t, c, z, "Jerry"))
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: []string{jerry.id}})
	mustNoErr(t, err)
	take(t, jerry, "invited", membership(client.Invited, conv.ID()))
	m, _ := sendRetrying(ctx, t, conv, "before the restart")
	take(t, jerry, "the message before the restart", messageID(m.ID))

	z.Kill(t)
	z.Restart(t)

	m, _ = sendRetrying(ctx, t, conv, "after the restart")
	take(t, jerry, "the message after the restart", messageID(m.ID))
}

// TestClusterPushAfterGatewayPause: Jerry's gateway (node 1) stalls
// (SIGSTOP) until the other nodes declare it dead, which drops its sessions
// from their registries, and resumes. Node 1 itself saw no member die, so
// nothing on its side changed; Jerry's socket stayed open. The registries
// must learn Jerry's session again, so that Tom's next message is pushed.
func TestClusterPushAfterGatewayPause(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{})
	x, y, z := c.Node(0), c.Node(1), c.Node(2)
	ctx := testCtx(t)
	tom := connect(t, c, x, x, "Tom")
	jerry := connectID(t, c, y, y, "Jerry", registryFirst(t, c, z, "Jerry"))
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: []string{jerry.id}})
	mustNoErr(t, err)
	take(t, jerry, "invited", membership(client.Invited, conv.ID()))

	alive := func(want bool) func() error {
		return func() error {
			for _, nd := range []*harness.Node{x, z} {
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

	m, _ := sendRetrying(ctx, t, conv, "after the pause")
	take(t, jerry, "the message after the pause", messageID(m.ID))
}

// TestClusterPushAfterGatewayRestart: Jerry's gateway (node 1) is killed
// and restarted at once and Jerry reconnects to it; the registries must
// route Tom's next message to Jerry's new session.
func TestClusterPushAfterGatewayRestart(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{})
	x, y, z := c.Node(0), c.Node(1), c.Node(2)
	ctx := testCtx(t)
	tom := connect(t, c, x, x, "Tom")
	jerry := connectID(t, c, y, y, "Jerry", registryFirst(t, c, z, "Jerry"))
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: []string{jerry.id}})
	mustNoErr(t, err)
	take(t, jerry, "invited", membership(client.Invited, conv.ID()))

	y.Kill(t)
	_ = jerry.conn.Close()
	y.Restart(t)
	jerry = connectID(t, c, y, y, "Jerry", jerry.id)

	m, _ := sendRetrying(ctx, t, conv, "after the restart")
	take(t, jerry, "the message after the restart", messageID(m.ID))
}
