package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterFailedQuorumSendStoredOnce: with R=3, W=2, the coordinator of
// a conversation's shard is cut off from the other replicas while a client
// connected to it sends: the send cannot reach its write quorum and fails
// with a retryable error. The client resends the same message (same dt)
// through another node, whose replicas take the lease over and store it.
// When the partition heals and the old coordinator takes its shard back,
// the failed attempt it still holds pending is dropped: history on every
// node has the message exactly once, under the resend's id.
func TestClusterFailedQuorumSendStoredOnce(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{FaultInjection: true})
	n0, n1 := c.Node(0), c.Node(1)
	cid, coord := convCoordinatedElsewhere(ctx, t, c, tom, jerry, "quorum")
	// Tom's second session is on the coordinator itself: its sends run
	// there without crossing the partition.
	tomThere := connectID(t, c, coord, n0, "Tom on the coordinator", tom.id)

	c.Partition(t, []*harness.Node{coord}, []*harness.Node{n0, n1})
	msg := client.NewText(fmt.Sprintf("sent while cut off %d", time.Now().UnixNano()))
	if m, err := tomThere.cl.Conversation(cid).Send(ctx, msg); err == nil {
		t.Fatalf("a send on a coordinator cut off from its replicas was acknowledged: %s", m.ID)
	} else if !retryable(err) {
		t.Fatalf("send without a quorum: %v, want a retryable error", err)
	}

	// The resend, with the same dt, through the other side.
	stored := resendRetrying(ctx, t, tom.cl.Conversation(cid), msg)

	c.Heal(t)
	harness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if nd := coordinatorOf(ctx, t, c, cid); nd == nil || nd.ID() != coord.ID() {
			return fmt.Errorf("coordinator %v, want %s back", nd, coord.ID())
		}
		return nil
	})
	for _, u := range []*user{tomThere, tom, jerry} {
		copies := idsOf(ctx, t, u, cid, msg.Content)
		if len(copies) != 1 || copies[0] != stored.ID {
			t.Fatalf("%s (on %s) history has the message as %v, want once as %s", u.name, u.home.ID(), copies, stored.ID)
		}
	}
}
