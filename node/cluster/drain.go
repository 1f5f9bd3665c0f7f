package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/transport"
)

// drainState is the progress of this node's drain: the shards it held when
// the drain started, and those whose new replicas confirmed they hold them.
type drainState struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	op     string
	shards []int
	left   map[int]bool
	// sizes is the size in bytes of this node's copy of each shard in
	// shards, measured when the hand-off starts; nil until then.
	sizes map[int]int64
	done  bool
}

// DrainStatus is the progress of a drain.
type DrainStatus struct {
	Operation  string
	Started    bool
	ShardsLeft int
	// BytesLeft is the size of this node's copies of the shards left (keys
	// and values): what their new replicas copy at most. -1 until measured.
	BytesLeft int64
	Done      bool
}

// Drain starts draining (idempotent): the node announces draining, which
// takes it out of the placement; the shards' new replicas pull them from
// this node and the others; once each confirmed every shard this node held,
// the node announces left. onStart runs once (the caller sends goaway).
func (c *Cluster) Drain(onStart func()) (string, error) {
	if !c.started.Load() {
		return "", errNotStarted
	}
	c.drain.mu.Lock()
	if c.drain.op != "" {
		op := c.drain.op
		c.drain.mu.Unlock()
		return op, nil
	}
	c.drain.op = fmt.Sprintf("drain-%s-%d", c.cfg.NodeID, time.Now().UnixMilli())
	c.drain.shards = c.Replicated()
	c.drain.left = map[int]bool{}
	for _, s := range c.drain.shards {
		c.drain.left[s] = true
	}
	op := c.drain.op
	ctx, cancel := context.WithCancel(c.ctx)
	c.drain.cancel = cancel
	c.drain.mu.Unlock()
	c.draining.Store(true)
	if err := c.ml.SetState(ring.StateDraining); err != nil && !errors.Is(err, membership.ErrInvalidTransition) {
		return op, err
	}
	if onStart != nil {
		onStart()
	}
	c.wg.Go(func() { c.handoff(ctx) })
	c.wg.Go(func() { c.measureDrain(ctx) })
	return op, nil
}

// CancelDrain stops a drain (idempotent): the node rejoins as joining,
// catches up the shards placement gives back to it and turns active again.
func (c *Cluster) CancelDrain() error {
	if !c.started.Load() {
		return nil // nothing can have been drained yet
	}
	c.drain.mu.Lock()
	if c.drain.op == "" {
		c.drain.mu.Unlock()
		return nil
	}
	if c.drain.cancel != nil {
		c.drain.cancel()
	}
	c.drain.cancel, c.drain.op, c.drain.shards, c.drain.left, c.drain.sizes, c.drain.done = nil, "", nil, nil, nil, false
	c.drain.mu.Unlock()
	c.active.Store(false)
	c.draining.Store(false)
	if err := c.ml.Rejoin(); err != nil {
		return err
	}
	c.rep.Rejoined()
	return nil
}

// DrainProgress reports the drain.
func (c *Cluster) DrainProgress() DrainStatus {
	c.drain.mu.Lock()
	defer c.drain.mu.Unlock()
	bytes := int64(-1)
	if c.drain.sizes != nil {
		bytes = 0
		for s := range c.drain.left {
			bytes += c.drain.sizes[s]
		}
	}
	return DrainStatus{Operation: c.drain.op, Started: c.drain.op != "", ShardsLeft: len(c.drain.left), BytesLeft: bytes, Done: c.drain.done}
}

// measureDrain records the size of this node's copy of each shard the
// drain hands off (one scan per shard, once per drain).
func (c *Cluster) measureDrain(ctx context.Context) {
	c.drain.mu.Lock()
	shards := c.drain.shards
	c.drain.mu.Unlock()
	sizes := make(map[int]int64, len(shards))
	for _, s := range shards {
		if ctx.Err() != nil {
			return
		}
		_, n, err := c.st.ShardSize(uint16(s))
		if err != nil {
			c.log.Warn("Measuring a shard to hand off failed", "shard", s, "err", err)
			return
		}
		sizes[s] = n
	}
	c.drain.mu.Lock()
	if ctx.Err() == nil {
		c.drain.sizes = sizes
	}
	c.drain.mu.Unlock()
}

// handoff waits until the new replicas of every shard this node held
// confirm they hold it, then announces left.
func (c *Cluster) handoff(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rg := c.ring.Load()
		if rg.State(c.cfg.NodeID) != ring.StateDraining {
			// Gossip has not rebuilt our ring yet.
			if !transport.Sleep(ctx, 50*time.Millisecond) {
				return
			}
			continue
		}
		c.drain.mu.Lock()
		var todo []int
		for s := range c.drain.left {
			todo = append(todo, s)
		}
		c.drain.mu.Unlock()
		for _, s := range todo {
			if c.rep.ConfirmHandoff(ctx, rg, uint16(s)) {
				c.drain.mu.Lock()
				delete(c.drain.left, s)
				c.drain.mu.Unlock()
			}
		}
		c.drain.mu.Lock()
		finished := len(c.drain.left) == 0
		c.drain.mu.Unlock()
		if finished {
			c.drain.mu.Lock()
			cancelled := c.drain.op == ""
			c.drain.mu.Unlock()
			if cancelled {
				return
			}
			if err := c.ml.SetState(ring.StateLeft); err != nil {
				c.log.Warn("Announcing left failed", "err", err)
			}
			c.drain.mu.Lock()
			c.drain.done = true
			handedOff := len(c.drain.shards) // CancelDrain resets it under the lock
			c.drain.mu.Unlock()
			c.log.Info("Drained: every shard handed off", "shards", handedOff)
			return
		}
		if !transport.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Remove takes a dead node out of the roster; its replicas are rebuilt on
// the nodes that take its shards over (they catch up from the survivors).
func (c *Cluster) Remove(id string) error {
	if !c.started.Load() {
		return errNotStarted
	}
	if c.live(id) {
		return fmt.Errorf("cluster: node %q is alive: drain it instead", id)
	}
	return c.ml.Remove(id)
}
