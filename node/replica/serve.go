package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Methods lists the peer methods the replicas serve (HandleRequest).
var Methods = []uint16{wire.Get, wire.Scan, wire.Write, wire.Replicate, wire.SyncScan, wire.Digest,
	wire.EnsureSynced, wire.Resync, wire.Lease, wire.LeaseRelease, wire.RangeDigest, wire.ShardSize,
	wire.Prepare, wire.PendingScan, wire.CommitWrite, wire.Resolve, wire.ChangeScan, wire.DiskLow}

// Messages lists the one-way peer messages the replicas serve
// (HandleMessage).
var Messages = []uint16{wire.CommitNotice}

// HandleRequest serves the replica methods. Garbage is answered with a
// non-retryable error (and logged by the transport), never a crash.
func (rs *Set) HandleRequest(ctx context.Context, req *transport.Request) ([]byte, error) {
	d := wire.Dec{B: req.Payload}
	switch req.Method {
	case wire.Get:
		return rs.serveGet(ctx, req, &d)
	case wire.Scan:
		out, shard, err := rs.serveScan(&d)
		if errors.Is(err, ErrNotReady) {
			return rs.forwardToHolder(ctx, shard, req, err)
		}
		return out, err
	case wire.Write:
		shard := uint16(d.U64())
		ops, err := decodeOps(&d, shard)
		if err != nil {
			return nil, err
		}
		noSync, commits, err := decodeWriteTail(&d, ops)
		if err != nil {
			return nil, err
		}
		if len(commits) > 0 {
			return nil, errors.New("cluster: commit notices on a write request")
		}
		if err := rs.serving(shard, nil); err != nil {
			return rs.forwardToHolder(ctx, shard, req, err)
		}
		return nil, rs.coordinateWrite(ctx, shard, ops, noSync)
	case wire.Prepare:
		return nil, rs.servePrepare(req.From, &d)
	case wire.CommitWrite:
		return nil, rs.serveCommitWrite(req.From, &d)
	case wire.Resolve:
		return nil, rs.serveResolve(req.From, &d)
	case wire.PendingScan:
		return rs.servePendingScan(&d)
	case wire.Replicate:
		// Sent by earlier builds, which apply at once: served so that their
		// writes still land during a rolling upgrade. A node of this build
		// coordinates only with W-1 peers of this build (they answer
		// Prepare).
		shard := uint16(d.U64())
		ops, err := decodeOps(&d, shard)
		if err != nil {
			return nil, err
		}
		if !rs.acceptsReplicate(shard, req.From) {
			rs.met.replicaRefused.Inc()
			return nil, errNotHolder
		}
		if err := rs.observeOps(ops); err != nil {
			return nil, err
		}
		rs.met.replicated.Add(float64(len(ops)))
		return nil, refusedLow(rs.st.ApplyVersioned(ops))
	case wire.SyncScan:
		return rs.serveSyncScan(&d)
	case wire.ChangeScan:
		return rs.serveChangeScan(&d)
	case wire.DiskLow:
		return rs.serveDiskLow(&d)
	case wire.Digest:
		return rs.serveDigest(&d)
	case wire.Resync:
		shards := d.Shards(rs.cfg.Shards)
		if err := d.Done("resync"); err != nil {
			return nil, err
		}
		rs.sync.resync(shards)
		return nil, nil
	case wire.Lease:
		return rs.serveLease(req.From, &d)
	case wire.LeaseRelease:
		return rs.serveLeaseRelease(req.From, &d)
	case wire.RangeDigest:
		return rs.serveRangeDigest(&d)
	case wire.ShardSize:
		return rs.serveShardSize(&d)
	case wire.EnsureSynced:
		shard := uint16(d.U64())
		if err := d.Done("ensure synced"); err != nil {
			return nil, err
		}
		return nil, rs.sync.ensure(ctx, shard)
	}
	return nil, fmt.Errorf("replica: unknown method %d", req.Method)
}

func (rs *Set) serveGet(ctx context.Context, req *transport.Request, d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	key := d.Bytes()
	if err := d.Done("get"); err != nil {
		return nil, err
	}
	if err := rs.serving(shard, key); err != nil {
		return rs.forwardToHolder(ctx, shard, req, err)
	}
	v, err := rs.localGet(key)
	var e wire.Enc
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.Bool(false)
		e.Bytes(nil)
	case err != nil:
		return nil, err
	default:
		e.Bool(true)
		e.Bytes(v)
	}
	return e.B, nil
}

func (rs *Set) serveDigest(d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	cutoff := d.U64()
	if err := d.Done("digest"); err != nil {
		return nil, err
	}
	if int(shard) >= rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: shard %d out of range", shard)
	}
	dg, n, err := rs.st.ShardDigestUpTo(shard, cutoff)
	if err != nil {
		return nil, err
	}
	var e wire.Enc
	e.U64(dg)
	e.U64(uint64(n))
	return e.B, nil
}

// errNotHolder answers a replicated write from a node that does not hold
// the shard's lease here (its lease ran out while the write was in flight).
var errNotHolder = wire.ErrNotHolder

// serving checks that this node may serve shard as its coordinator: it
// replicates it, has caught up and holds (or now acquires) the shard's
// lease. key, if set, must be in the shard.
func (rs *Set) serving(shard uint16, key []byte) error {
	if err := rs.Servable(shard, key); err != nil {
		return err
	}
	if !rs.canCoordinate(shard) {
		return ErrNotReady
	}
	return nil
}

// forwardToHolder passes a coordinator request this node cannot serve (err)
// on to the node it granted the shard's lease to, once: the sender may not
// reach that node (it suspects it) while this node does.
func (rs *Set) forwardToHolder(ctx context.Context, shard uint16, req *transport.Request, err error) ([]byte, error) {
	h := rs.KnownHolder(shard)
	if !errors.Is(err, ErrNotReady) || h == "" || h == rs.cfg.NodeID || h == req.From || int(shard) >= rs.cfg.Shards {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rs.requestTimeout())
	defer cancel()
	out, ferr := rs.call(ctx, h, req.Method, req.Payload)
	rs.peers.NoteCall(h, ferr)
	return out, ferr
}

// Servable checks that this node may seek to serve shard as its
// coordinator: it replicates it, has caught up and is not stopping.
func (rs *Set) Servable(shard uint16, key []byte) error {
	if int(shard) >= rs.cfg.Shards {
		return fmt.Errorf("cluster: shard %d out of range", shard)
	}
	if key != nil {
		if s, err := store.ShardOf(key); err != nil || s != shard {
			return fmt.Errorf("cluster: key outside shard %d", shard)
		}
	}
	if !rs.peers.Ring().IsReplica(int(shard), rs.cfg.NodeID) || !rs.eligible(shard) {
		return ErrNotReady
	}
	return nil
}

// serveScan answers one page of a remote kv.Scan: at most the requested
// count (itself at most scanPage) of pairs and about scanPageBytes of them,
// then whether the scan may go on after the last pair sent.
func (rs *Set) serveScan(d *wire.Dec) ([]byte, uint16, error) {
	lower, upper := d.Bytes(), d.Bytes()
	reverse := d.Bool()
	limit := int(d.U64())
	if err := d.Done("scan"); err != nil {
		return nil, 0, err
	}
	shard, err := store.ShardOf(lower)
	if err != nil {
		return nil, 0, err
	}
	if err := rs.serving(shard, nil); err != nil {
		return nil, shard, err
	}
	if limit <= 0 || limit > scanPage {
		limit = scanPage
	}
	var body wire.Enc
	n, full := 0, false
	err = rs.localScan(lower, upper, reverse, limit, func(k, v []byte) (bool, error) {
		if n > 0 && len(body.B)+len(k)+len(v)+2*binary.MaxVarintLen64 > scanPageBytes {
			full = true
			return false, nil
		}
		body.Bytes(k)
		body.Bytes(v)
		n++
		return true, nil
	})
	if err != nil {
		return nil, shard, err
	}
	var e wire.Enc
	e.U64(uint64(n))
	e.B = append(e.B, body.B...)
	e.Bool(full || n == limit)
	return e.B, shard, nil
}

// LocalScan scans this node's store (not the coordinator's), decoding
// records and skipping tombstones: the admin API's debug reads.
func (rs *Set) LocalScan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	return rs.localScan(lower, upper, false, 0, fn)
}
