package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
)

// Errors of the data path. All are retryable: the client's SDK retries or
// the user resends.
var (
	// ErrNoCoordinator: no replica of the shard is live and caught up.
	ErrNoCoordinator = transport.Retry(errors.New("cluster: no live replica can coordinate the shard"))
	// ErrNotReady: this node is not (yet) the shard's coordinator.
	ErrNotReady = transport.Retry(errors.New("cluster: replica not caught up or not coordinating"))
	// ErrQuorum: fewer than W replicas acknowledged a write.
	ErrQuorum = transport.Retry(errors.New("cluster: write quorum not reached"))
)

// scanPage bounds the pairs one remote scan answer carries.
const scanPage = 512

// KV returns the store.KV that routes by shard.
func (c *Cluster) KV() store.KV { return (*kv)(c) }

type kv Cluster

var _ store.KV = (*kv)(nil)

func (k *kv) c() *Cluster { return (*Cluster)(k) }

func (k *kv) NewBatch() *store.Batch { return &store.Batch{} }

func (k *kv) ScanPrefix(prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	return k.Scan(prefix, store.PrefixEnd(prefix), reverse, fn)
}

// Get reads key at its shard's coordinator.
func (k *kv) Get(key []byte) ([]byte, error) {
	shard, err := store.ShardOf(key)
	if err != nil {
		return nil, err
	}
	c := k.c()
	var out []byte
	err = c.onCoordinator(context.Background(), shard, func() error {
		var err error
		out, err = c.localGet(key)
		return err
	}, func(ctx context.Context, to string) error {
		var e enc
		e.u64(uint64(shard))
		e.bytes(key)
		resp, err := c.tr.Call(ctx, to, mGet, e.b)
		if err != nil {
			return err
		}
		d := dec{b: resp}
		found := d.bool()
		v := d.bytes()
		if err := d.done("get"); err != nil {
			return err
		}
		if !found {
			return store.ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Scan reads [lower, upper) of one shard at its coordinator, remotely in
// pages of scanPage pairs.
func (k *kv) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	shard, err := store.ShardOf(lower)
	if err != nil {
		return err
	}
	shardEnd := store.ShardEnd(shard)
	if upper == nil || bytes.Compare(upper, shardEnd) > 0 {
		upper = shardEnd
	}
	c := k.c()
	return c.onCoordinator(context.Background(), shard, func() error {
		return c.localScan(lower, upper, reverse, 0, fn)
	}, func(ctx context.Context, to string) error {
		lo, hi := lower, upper
		for {
			var e enc
			e.bytes(lo)
			e.bytes(hi)
			e.bool(reverse)
			e.u64(scanPage)
			resp, err := c.tr.Call(ctx, to, mScan, e.b)
			if err != nil {
				return err
			}
			d := dec{b: resp}
			n := d.count()
			var last []byte
			for range n {
				kk, vv := d.bytes(), d.bytes()
				if d.err != nil {
					break
				}
				cont, err := fn(kk, vv)
				if err != nil || !cont {
					return err
				}
				last = kk
			}
			more := d.bool()
			if err := d.done("scan"); err != nil {
				return err
			}
			if !more || last == nil {
				return nil
			}
			if reverse {
				hi = append([]byte(nil), last...)
			} else {
				lo = append(append([]byte(nil), last...), 0)
			}
		}
	})
}

// Commit splits the batch by shard and writes each part at its shard's
// coordinator, in the order the shards first appear in the batch. Each part
// is atomic and durable on W replicas when Commit returns nil; a failure
// may leave earlier parts applied (they are idempotent records the caller
// may rewrite).
func (k *kv) Commit(b *store.Batch) error {
	c := k.c()
	var order []uint16
	parts := map[uint16][]store.Op{}
	for _, op := range b.Ops() {
		shard, err := store.ShardOf(op.Key)
		if err != nil {
			return err
		}
		if _, ok := parts[shard]; !ok {
			order = append(order, shard)
		}
		parts[shard] = append(parts[shard], op)
	}
	for _, shard := range order {
		if err := c.write(context.Background(), shard, parts[shard]); err != nil {
			return err
		}
	}
	return nil
}

// write runs ops at shard's coordinator.
func (c *Cluster) write(ctx context.Context, shard uint16, ops []store.Op) error {
	return c.onCoordinator(ctx, shard, func() error {
		return c.coordinateWrite(ctx, shard, ops)
	}, func(ctx context.Context, to string) error {
		var e enc
		e.u64(uint64(shard))
		encodeOps(&e, ops)
		_, err := c.tr.Call(ctx, to, mWrite, e.b)
		return err
	})
}

// onCoordinator runs local if this node coordinates shard, else remote
// against the live replicas in preference order, moving to the next one
// while the answer is retryable (down, not caught up, epoch changing). The
// data path is idempotent (versioned records), so after a round without
// success it tries again while gossip converges and a failed coordinator's
// lease runs out (lease.go), within a budget well under the SDK's 20 s
// request timeout.
//
// A stopping node (Quiesce) gives its own remaining work (queued receiver
// acks) a short budget instead: when the whole cluster stops at once no
// coordinator is left, and each operation would otherwise wait the full
// budget.
func (c *Cluster) onCoordinator(ctx context.Context, shard uint16, local func() error, remote func(ctx context.Context, to string) error) error {
	budget := 2 * c.requestTimeout()
	if c.stopping.Load() {
		budget = c.leaseDuration() / 4
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := c.onCoordinatorOnce(ctx, shard, local, remote, transport.IsRetryable)
		if err == nil || !transport.IsRetryable(err) || !sleepCtx(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// onCoordinatorOnce tries the live replicas of shard in preference order
// (locally when this node is the one), moving on while next(err).
func (c *Cluster) onCoordinatorOnce(ctx context.Context, shard uint16, local func() error,
	remote func(ctx context.Context, to string) error, next func(error) bool) error {
	last := ErrNoCoordinator
	for _, id := range c.coordinators(shard) {
		if id == c.cfg.NodeID {
			if !c.canCoordinate(shard) {
				last = ErrNotReady
				continue
			}
			return local()
		}
		err := remote(ctx, id)
		c.noteCall(id, err)
		if err == nil || errors.Is(err, store.ErrNotFound) || !next(err) {
			return err
		}
		last = err
	}
	return last
}

// coordinateWrite versions ops (a set becomes a versioned value, a delete
// a tombstone, a field update a VersionDoc record), applies them here and
// on the shard's other replicas and returns once W replicas hold them.
func (c *Cluster) coordinateWrite(ctx context.Context, shard uint16, ops []store.Op) error {
	vops := make([]store.Op, 0, len(ops))
	for _, op := range ops {
		switch op.Kind {
		case store.OpSet:
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: store.EncodeVersioned(c.clk.Now(), false, op.Value)})
		case store.OpDelete:
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: store.EncodeVersioned(c.clk.Now(), true, nil)})
		case store.OpMergeFields:
			// Every field at one fresh version; the merge operator
			// combines it with the doc on each replica, field by field.
			rec, err := store.DocRecord(c.clk.Now(), op.Value)
			if err != nil {
				return fmt.Errorf("cluster: field update of key %x: %w", op.Key, err)
			}
			vops = append(vops, store.Op{Kind: store.OpSet, Key: op.Key, Value: rec})
		case store.OpDeleteRange:
			if s, err := store.ShardOf(op.Value); err != nil || (s != shard && !bytes.Equal(op.Value, store.ShardEnd(shard))) {
				return fmt.Errorf("cluster: delete range crosses shard %d", shard)
			}
			vops = append(vops, op)
		default:
			return fmt.Errorf("cluster: unknown op kind %d", op.Kind)
		}
	}
	replicas := c.ring.Load().Replicas(int(shard))
	need := c.quorum(len(replicas))
	var e enc
	e.u64(uint64(shard))
	encodeOps(&e, vops)
	payload := e.b
	results := make(chan error, len(replicas))
	for _, id := range replicas {
		if id == c.cfg.NodeID {
			continue
		}
		c.wg.Go(func() {
			rctx, cancel := context.WithTimeout(c.ctx, c.requestTimeout())
			defer cancel()
			_, err := c.tr.Call(rctx, id, mReplicate, payload)
			c.noteCall(id, err)
			if err != nil {
				c.met.replicateErrors.Inc()
			}
			results <- err
		})
	}
	start := time.Now()
	if err := c.st.ApplyVersioned(vops); err != nil {
		return err
	}
	acks, pending := 1, len(replicas)-1
	var lastErr error
	for acks < need && pending > 0 {
		select {
		case err := <-results:
			pending--
			if err == nil {
				acks++
			} else {
				lastErr = err
			}
		case <-ctx.Done():
			return transport.Retry(ctx.Err())
		}
	}
	c.met.writeSeconds.Observe(time.Since(start).Seconds())
	if acks < need {
		c.met.quorumFailures.Inc()
		return fmt.Errorf("%w: %d of %d acknowledged (%v)", ErrQuorum, acks, need, lastErr)
	}
	return nil
}

func (c *Cluster) requestTimeout() time.Duration {
	if c.cfg.Local {
		return 2 * time.Second
	}
	return 5 * time.Second
}

// localGet reads a replicated key from this node's store. A field doc
// reads as its fields value (store.DecodeFields), or not found when no
// field is live.
func (c *Cluster) localGet(key []byte) ([]byte, error) {
	rec, err := c.st.Get(key)
	if err != nil {
		return nil, err
	}
	v, tomb, val, err := store.DecodeVersioned(rec)
	if err != nil {
		return nil, err
	}
	c.clk.Observe(v)
	if tomb {
		return nil, store.ErrNotFound
	}
	if rec[0] == store.VersionDoc {
		val, live, err := store.DocValue(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: key %x", err, key)
		}
		if !live {
			return nil, store.ErrNotFound
		}
		return val, nil
	}
	return val, nil
}

// localScan scans this node's store, decoding records (field docs into
// fields values) and skipping tombstones and docs without a live field.
// limit > 0 stops after limit pairs.
func (c *Cluster) localScan(lower, upper []byte, reverse bool, limit int, fn func(k, v []byte) (bool, error)) error {
	n := 0
	return c.st.Scan(lower, upper, reverse, func(k, rec []byte) (bool, error) {
		_, tomb, val, err := store.DecodeVersioned(rec)
		if err != nil {
			return false, fmt.Errorf("%w: key %x", err, k)
		}
		if tomb {
			return true, nil
		}
		if rec[0] == store.VersionDoc {
			var live bool
			if val, live, err = store.DocValue(rec); err != nil {
				return false, fmt.Errorf("%w: key %x", err, k)
			}
			if !live {
				return true, nil
			}
		}
		n++
		cont, err := fn(k, val)
		return cont && (limit == 0 || n < limit), err
	})
}

func encodeOps(e *enc, ops []store.Op) {
	e.u64(uint64(len(ops)))
	for _, op := range ops {
		e.u64(uint64(op.Kind))
		e.bytes(op.Key)
		e.bytes(op.Value)
	}
}

func decodeOps(d *dec, shard uint16) ([]store.Op, error) {
	n := d.count()
	ops := make([]store.Op, 0, n)
	for range n {
		op := store.Op{Kind: store.OpKind(d.u64()), Key: d.bytes(), Value: d.bytes()}
		if d.err != nil {
			break
		}
		if s, err := store.ShardOf(op.Key); err != nil || s != shard {
			return nil, fmt.Errorf("cluster: op key outside shard %d", shard)
		}
		// OpMergeFields comes only in mWrite (a replica's ApplyVersioned
		// rejects it): mReplicate carries its versioned OpSet record.
		if op.Kind < store.OpSet || op.Kind > store.OpMergeFields {
			return nil, fmt.Errorf("cluster: unknown op kind %d", op.Kind)
		}
		ops = append(ops, op)
	}
	return ops, d.done("ops")
}

// observeOps moves the clock past the versions of replicated records.
func (c *Cluster) observeOps(ops []store.Op) error {
	for _, op := range ops {
		if op.Kind != store.OpSet {
			continue
		}
		v, _, _, err := store.DecodeVersioned(op.Value)
		if err != nil {
			return err
		}
		c.clk.Observe(v)
	}
	return nil
}
