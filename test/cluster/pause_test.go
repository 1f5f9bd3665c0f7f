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
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/test/harness"
)

// coordinatorOf returns the running node that coordinates cid's shard, as
// the nodes' admin APIs report it ("" while none does).
func coordinatorOf(ctx context.Context, t *testing.T, c *harness.Cluster, cid string) *harness.Node {
	t.Helper()
	shard := ring.ConversationShard(c.Options().Shards, apps.DevAppID, cid)
	for _, nd := range c.Running() {
		st, err := nd.Admin().Shards(ctx)
		if err != nil {
			continue
		}
		for _, s := range st.Shards {
			if s.Shard == shard && s.Coordinator {
				return nd
			}
		}
	}
	return nil
}

// TestClusterCoordinatorLossIsAPause: with R=3, W=2, the coordinator of a
// conversation's shard is killed with SIGKILL while two members on the
// other nodes send as fast as they are acknowledged. The lease moves to
// another replica; meanwhile sends wait inside the cluster: no send fails
// (no 4200), and every acknowledged message is in history once.
func TestClusterCoordinatorLossIsAPause(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})

	cid, victim := convCoordinatedElsewhere(ctx, t, c, tom, jerry, "pause")

	var (
		mu     sync.Mutex
		acked  []*client.Message
		count  = map[string]int{}
		failed []error
	)
	senderCtx, stopSenders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range []*user{tom, jerry} {
		wg.Go(func() {
			h := u.cl.Conversation(cid)
			for i := 0; senderCtx.Err() == nil; i++ {
				m, err := h.Send(senderCtx, client.NewText(fmt.Sprintf("%s %d", u.name, i)))
				mu.Lock()
				if err != nil {
					if senderCtx.Err() == nil {
						failed = append(failed, fmt.Errorf("%s send %d: %w", u.name, i, err))
					}
				} else {
					acked = append(acked, m)
					count[u.name]++
				}
				mu.Unlock()
			}
		})
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return count["Tom"], count["Jerry"]
	}
	harness.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if a, b := counts(); a < 20 || b < 20 {
			return fmt.Errorf("acknowledged so far %d, %d", a, b)
		}
		return nil
	})
	victim.Kill(t)
	killed := time.Now()
	a0, b0 := counts()
	// Both go on being acknowledged once another replica took the lease.
	harness.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if a, b := counts(); a < a0+20 || b < b0+20 {
			return fmt.Errorf("acknowledged since the kill %d, %d", a-a0, b-b0)
		}
		return nil
	})
	t.Logf("20 more sends each acknowledged %v after the kill", time.Since(killed).Round(time.Millisecond))
	stopSenders()
	wg.Wait()
	mu.Lock()
	if len(failed) > 0 {
		t.Errorf("%d sends failed around the coordinator's loss, first: %v", len(failed), failed[0])
	}
	want := slices.Clone(acked)
	mu.Unlock()
	slices.SortFunc(want, func(a, b *client.Message) int { return a.Timestamp.Compare(b.Timestamp) })
	for _, u := range []*user{tom, jerry} {
		checkHistory(t, u, cid, want)
	}
}

// TestClusterWillMessageFollowsTheLease: a will message is held by the node
// that coordinated its conversation when it was sent (a stand-in, while the
// preferred coordinator was down); when the sender drops off later the
// preferred coordinator is back and holds the lease, and the will message
// is stored there, under the id its sender was given.
func TestClusterWillMessageFollowsTheLease(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})
	cid, preferred := convCoordinatedElsewhere(ctx, t, c, tom, jerry, "will")
	preferred.Kill(t)
	// A stand-in takes the lease on the next send.
	sendRetrying(ctx, t, tom.cl.Conversation(cid), "while the preferred coordinator is down")
	var standIn *harness.Node
	harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if standIn = coordinatorOf(ctx, t, c, cid); standIn == nil {
			return fmt.Errorf("no stand-in coordinator of %s yet", cid)
		}
		return nil
	})
	will := client.NewText("Tom went offline")
	will.Will = true
	held, err := tom.cl.Conversation(cid).Send(ctx, will)
	mustNoErr(t, err)
	t.Logf("will %s held by the stand-in %s", held.ID, standIn.ID())

	preferred.Restart(t)
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if nd := coordinatorOf(ctx, t, c, cid); nd == nil || nd.ID() != preferred.ID() {
			return fmt.Errorf("coordinator %v, want %s back", nd, preferred.ID())
		}
		return nil
	})
	tom.conn.DropConnection()
	// The will message is stored at the coordinator under its id. (Its
	// push may miss Jerry: the restarted node's session registry is soft
	// state and may not list him yet; history has it either way.)
	harness.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		page, _, err := jerry.cl.Conversation(cid).MessageIterator(10).Next(ctx)
		if err != nil {
			return err
		}
		for _, m := range page {
			if m.ID == held.ID {
				if m.From != tom.id {
					t.Fatalf("will message %+v", m)
				}
				return nil
			}
		}
		return fmt.Errorf("will %s not in Jerry's history (%d messages)", held.ID, len(page))
	})
}
