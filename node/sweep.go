package node

import (
	"context"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/cluster"
	"github.com/imcluster/imcluster/node/session"
)

// tokenSweepInterval is how often expired session tokens are deleted. An
// expired token is refused at once; the sweep only reclaims its space, so
// the store holds at most TTL + 10 minutes of a login flood's tokens.
const tokenSweepInterval = 10 * time.Minute

// tokenSweepBatch bounds the tokens one sweep examines per (app, shard), so
// one sweep's batch stays far below the replication frame limit; a shard
// with more is finished by the next sweeps.
const tokenSweepBatch = 20000

// sweepTokens deletes expired session tokens in the shards this node
// coordinates, every tokenSweepInterval until ctx is done. It is started
// by Start and owned by the node's WaitGroup.
func (n *Node) sweepTokens(ctx context.Context, cl *cluster.Cluster, registry *apps.Registry, tokens *session.Tokens) {
	tick := time.NewTicker(tokenSweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		deleted := 0
		for _, shard := range cl.Coordinated() {
			for _, app := range registry.IDs() {
				d, err := tokens.Sweep(ctx, app, shard, tokenSweepBatch)
				if err != nil {
					if ctx.Err() == nil {
						n.log.Warn("Sweeping expired session tokens", "shard", shard, "err", err)
					}
					continue
				}
				deleted += d
			}
		}
		if deleted > 0 {
			n.log.Debug("Swept expired session tokens", "deleted", deleted)
		}
	}
}
