package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
)

// handleRequest serves peer requests. Garbage is answered with a
// non-retryable error (and logged by the transport), never a crash.
func (c *Cluster) handleRequest(ctx context.Context, req *transport.Request) ([]byte, error) {
	d := dec{b: req.Payload}
	switch req.Method {
	case mGet:
		shard := uint16(d.u64())
		key := d.bytes()
		if err := d.done("get"); err != nil {
			return nil, err
		}
		if err := c.serving(shard, key); err != nil {
			return c.forwardToHolder(ctx, shard, req, err)
		}
		v, err := c.localGet(key)
		var e enc
		switch {
		case errors.Is(err, store.ErrNotFound):
			e.bool(false)
			e.bytes(nil)
		case err != nil:
			return nil, err
		default:
			e.bool(true)
			e.bytes(v)
		}
		return e.b, nil
	case mScan:
		out, shard, err := c.serveScan(&d)
		if errors.Is(err, ErrNotReady) {
			return c.forwardToHolder(ctx, shard, req, err)
		}
		return out, err
	case mWrite:
		shard := uint16(d.u64())
		ops, err := decodeOps(&d, shard)
		if err != nil {
			return nil, err
		}
		if err := c.serving(shard, nil); err != nil {
			return c.forwardToHolder(ctx, shard, req, err)
		}
		return nil, c.coordinateWrite(ctx, shard, ops)
	case mReplicate:
		shard := uint16(d.u64())
		ops, err := decodeOps(&d, shard)
		if err != nil {
			return nil, err
		}
		if !c.acceptsReplicate(shard, req.From) {
			c.met.replicaRefused.Inc()
			return nil, errNotHolder
		}
		if err := c.observeOps(ops); err != nil {
			return nil, err
		}
		c.met.replicated.Add(float64(len(ops)))
		return nil, c.st.ApplyVersioned(ops)
	case mCommand:
		return c.serveCommand(ctx, &d)
	case mOnline:
		app := d.str()
		ids := d.strs()
		if err := d.done("online"); err != nil {
			return nil, err
		}
		var e enc
		e.strs(c.reg.online(app, ids))
		return e.b, nil
	case mRegister:
		return nil, c.reg.apply(c, req.From, &d)
	case mSyncScan:
		return c.serveSyncScan(&d)
	case mDigest:
		shard := uint16(d.u64())
		cutoff := d.u64()
		if err := d.done("digest"); err != nil {
			return nil, err
		}
		if int(shard) >= c.cfg.Shards {
			return nil, fmt.Errorf("cluster: shard %d out of range", shard)
		}
		dg, n, err := c.st.ShardDigestUpTo(shard, cutoff)
		if err != nil {
			return nil, err
		}
		var e enc
		e.u64(dg)
		e.u64(uint64(n))
		return e.b, nil
	case mPing:
		return nil, nil
	case mResync:
		shards := d.shards(c.cfg.Shards)
		if err := d.done("resync"); err != nil {
			return nil, err
		}
		c.sync.resync(shards)
		return nil, nil
	case mKick:
		app, client := d.str(), d.str()
		if err := d.done("kick"); err != nil {
			return nil, err
		}
		var e enc
		e.u64(uint64(c.gateway.Kick(app, client)))
		return e.b, nil
	case mLease:
		return c.serveLease(req.From, &d)
	case mLeaseRelease:
		return c.serveLeaseRelease(req.From, &d)
	case mRangeDigest:
		return c.serveRangeDigest(&d)
	case mShardSize:
		return c.serveShardSize(&d)
	case mEnsureSynced:
		shard := uint16(d.u64())
		if err := d.done("ensure synced"); err != nil {
			return nil, err
		}
		return nil, c.sync.ensure(ctx, shard)
	}
	return nil, fmt.Errorf("cluster: unknown method %d", req.Method)
}

// errNotHolder answers a replicated write from a node that does not hold
// the shard's lease here (its lease ran out while the write was in flight).
var errNotHolder = transport.Retry(errors.New("cluster: sender does not hold the shard's lease"))

// serving checks that this node may serve shard as its coordinator: it
// replicates it, has caught up and holds (or now acquires) the shard's
// lease. key, if set, must be in the shard.
func (c *Cluster) serving(shard uint16, key []byte) error {
	if err := c.servable(shard, key); err != nil {
		return err
	}
	if !c.canCoordinate(shard) {
		return ErrNotReady
	}
	return nil
}

// forwardToHolder passes a coordinator request this node cannot serve (err)
// on to the node it granted the shard's lease to, once: the sender may not
// reach that node (it suspects it) while this node does.
func (c *Cluster) forwardToHolder(ctx context.Context, shard uint16, req *transport.Request, err error) ([]byte, error) {
	h := c.knownHolder(shard)
	if !errors.Is(err, ErrNotReady) || h == "" || h == c.cfg.NodeID || h == req.From || int(shard) >= c.cfg.Shards {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout())
	defer cancel()
	out, ferr := c.tr.Call(ctx, h, req.Method, req.Payload)
	c.noteCall(h, ferr)
	return out, ferr
}

// servable checks that this node may seek to serve shard as its
// coordinator: it replicates it, has caught up and is not stopping.
func (c *Cluster) servable(shard uint16, key []byte) error {
	if int(shard) >= c.cfg.Shards {
		return fmt.Errorf("cluster: shard %d out of range", shard)
	}
	if key != nil {
		if s, err := store.ShardOf(key); err != nil || s != shard {
			return fmt.Errorf("cluster: key outside shard %d", shard)
		}
	}
	if !c.ring.Load().IsReplica(int(shard), c.cfg.NodeID) || !c.eligible(shard) {
		return ErrNotReady
	}
	return nil
}

func (c *Cluster) serveScan(d *dec) ([]byte, uint16, error) {
	lower, upper := d.bytes(), d.bytes()
	reverse := d.bool()
	limit := int(d.u64())
	if err := d.done("scan"); err != nil {
		return nil, 0, err
	}
	shard, err := store.ShardOf(lower)
	if err != nil {
		return nil, 0, err
	}
	if err := c.serving(shard, nil); err != nil {
		return nil, shard, err
	}
	if limit <= 0 || limit > scanPage {
		limit = scanPage
	}
	var body enc
	n := 0
	err = c.localScan(lower, upper, reverse, limit, func(k, v []byte) (bool, error) {
		body.bytes(k)
		body.bytes(v)
		n++
		return true, nil
	})
	if err != nil {
		return nil, shard, err
	}
	var e enc
	e.u64(uint64(n))
	e.b = append(e.b, body.b...)
	e.bool(n == limit)
	return e.b, shard, nil
}

// handleMessage serves one-way peer messages; it must not block.
func (c *Cluster) handleMessage(msg *transport.Message) {
	d := dec{b: msg.Payload}
	var err error
	switch msg.Method {
	case msgFanout:
		err = c.serveFanout(&d)
	case msgPush:
		err = c.servePush(&d)
	case msgKickTag:
		app, client, tag, device := d.str(), d.str(), d.str(), d.str()
		except := d.u64()
		if err = d.done("kick tag"); err == nil && c.gateway != nil {
			// A kick revokes the session's token (a store write): not on
			// the connection's reader.
			c.async(func() { c.gateway.KickTag(app, client, tag, device, sessionID(except)) })
		}
	case msgSessionGone:
		app, client := d.str(), d.str()
		s := d.u64()
		clean := d.bool()
		if err = d.done("session gone"); err == nil && c.engine != nil {
			// SessionGone asks the registry whether the client is still
			// online: not on the connection's reader.
			c.async(func() { c.engine.SessionGone(app, client, sessionID(s), clean) })
		}
	default:
		err = fmt.Errorf("cluster: unknown message %d", msg.Method)
	}
	if err != nil {
		c.met.badMessages.Inc()
		c.log.Debug("Dropping bad peer message", "from", msg.From, "method", msg.Method, "err", err)
	}
}
