package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Errors of the data path, with their codes on the wire (package wire).
// All are retryable: the client's SDK retries or the user resends.
var (
	// ErrNoCoordinator: no replica of the shard is live and caught up.
	ErrNoCoordinator = wire.ErrNoCoordinator
	// ErrNotReady: this node is not (yet) the shard's coordinator.
	ErrNotReady = wire.ErrNotReady
	// ErrQuorum: fewer than W replicas acknowledged a write.
	ErrQuorum = wire.ErrQuorum
)

// scanPage bounds the pairs one remote scan answer carries, and
// scanPageBytes their encoded bytes: a page stops before the pair that
// would take it past 1 MiB, a quarter of the transport's default 4 MiB
// frame limit, so a page of large records (conversation records of up to
// the record limit, storage objects) always fits in one frame. The first
// pair of a page is always sent: one pair fits, since it was written
// through the same transport.
const (
	scanPage      = 512
	scanPageBytes = 1 << 20
)

// KV returns the store.KV that routes by shard.
func (rs *Set) KV() store.KV { return &kv{rs: rs} }

// kv is the store.KV of the domain packages: each key at its shard's
// coordinator.
type kv struct{ rs *Set }

// NewVersions returns the first of n consecutive versions of this node's
// clock, above every version it gave or saw: the conversation engine
// versions its outbox effects with them when the command runs
// (store.Op.Version).
func (k *kv) NewVersions(n int) uint64 { return k.rs.clk.Reserve(n) }

var _ store.KV = (*kv)(nil)

func (k *kv) NewBatch() *store.Batch { return &store.Batch{} }

func (k *kv) ScanPrefix(prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	return k.Scan(prefix, store.PrefixEnd(prefix), reverse, fn)
}

// Get reads key at its shard's coordinator.
func (k *kv) Get(key []byte) ([]byte, error) {
	var out []byte
	err := k.get(key, func() (err error) {
		out, err = k.rs.localGet(key)
		return err
	}, func(v []byte) error {
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// GetShared is Get's value decoded; when this node coordinates key's shard
// the store keeps the decoded form for the next reads (store.GetShared:
// the result is shared and must not be modified).
func (k *kv) GetShared(key []byte, decode func(v []byte) (any, error)) (any, error) {
	var out any
	err := k.get(key, func() (err error) {
		out, err = k.rs.st.GetShared(key, func(rec []byte) (any, error) {
			v, err := k.rs.recordValue(key, rec)
			if err != nil {
				return nil, err
			}
			return decode(v)
		})
		return err
	}, func(v []byte) (err error) {
		out, err = decode(append([]byte(nil), v...))
		return err
	})
	return out, err
}

var _ store.SharedGetter = (*kv)(nil)

// get reads key at its shard's coordinator: local runs when that is this
// node, remote gets the value another coordinator answered (it aliases the
// answer).
func (k *kv) get(key []byte, local func() error, remote func(v []byte) error) error {
	shard, err := store.ShardOf(key)
	if err != nil {
		return err
	}
	rs := k.rs
	return rs.onCoordinator(context.Background(), shard, local, func(ctx context.Context, to string) error {
		var e wire.Enc
		e.U64(uint64(shard))
		e.Bytes(key)
		resp, err := rs.call(ctx, to, wire.Get, e.B)
		if err != nil {
			return err
		}
		d := wire.Dec{B: resp}
		found := d.Bool()
		v := d.Bytes()
		if err := d.Done("get"); err != nil {
			return err
		}
		if !found {
			return store.ErrNotFound
		}
		return remote(v)
	})
}

// Scan reads [lower, upper) of one shard at its coordinator, remotely in
// pages of at most scanPage pairs and about scanPageBytes (serveScan cuts
// them; the answer says whether more follow).
func (k *kv) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	shard, err := store.ShardOf(lower)
	if err != nil {
		return err
	}
	shardEnd := store.ShardEnd(shard)
	if upper == nil || bytes.Compare(upper, shardEnd) > 0 {
		upper = shardEnd
	}
	rs := k.rs
	return rs.onCoordinator(context.Background(), shard, func() error {
		return rs.localScan(lower, upper, reverse, 0, fn)
	}, func(ctx context.Context, to string) error {
		lo, hi := lower, upper
		for {
			var e wire.Enc
			e.Bytes(lo)
			e.Bytes(hi)
			e.Bool(reverse)
			e.U64(scanPage)
			resp, err := rs.call(ctx, to, wire.Scan, e.B)
			if err != nil {
				return err
			}
			d := wire.Dec{B: resp}
			n := d.Count()
			var last []byte
			for range n {
				kk, vv := d.Bytes(), d.Bytes()
				if d.Err != nil {
					break
				}
				cont, err := fn(kk, vv)
				if err != nil || !cont {
					return err
				}
				last = kk
			}
			more := d.Bool()
			if err := d.Done("scan"); err != nil {
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
// is atomic and durable on W replicas when Commit returns nil (with
// b.SetNoSync, in W replicas' write-ahead logs, not fsync'd: see
// store.Batch.SetNoSync); a failure may leave earlier parts applied (they
// are idempotent records the caller may rewrite).
func (k *kv) Commit(b *store.Batch) error {
	order, parts, err := store.SplitByShard(b.Ops())
	if err != nil {
		return err
	}
	for _, shard := range order {
		if err := k.rs.write(context.Background(), shard, parts[shard], b.NoSync()); err != nil {
			return err
		}
	}
	return nil
}

// write runs ops at shard's coordinator.
func (rs *Set) write(ctx context.Context, shard uint16, ops []store.Op, noSync bool) error {
	return rs.onCoordinator(ctx, shard, func() error {
		return rs.coordinateWrite(ctx, shard, ops, noSync)
	}, func(ctx context.Context, to string) error {
		var e wire.Enc
		e.U64(uint64(shard))
		encodeOps(&e, ops)
		encodeWriteTail(&e, noSync, nil, ops)
		_, err := rs.call(ctx, to, wire.Write, e.B)
		return err
	})
}

// A write's options travel after its ops (wire.Write, wire.Prepare) as one
// optional flags field, and with flagCommits the commit notices a
// wire.Prepare carries follow it (count, then shard, term and id of each).
// A durable write without notices sends no flags, as earlier builds did;
// earlier builds ignore what follows the ops (they do not read past them),
// so a NoSync write they hold is merely synced, and the notices are lost to
// them (safe: see quorum.go). With flagVersions a wire.Write carries its
// ops' own versions (store.Op.Version, an outbox effect's), one per op,
// zero for none; a write without them sends no such flag. An earlier build
// refuses the flag (unknown write flags), so such a write fails at its
// coordinator until that node is upgraded, and the outbox retries it.
const (
	flagNoSync   = 1 << iota // store.Batch.SetNoSync: no fsync of its own
	flagCommits              // commit notices follow
	flagVersions             // the ops' versions follow (wire.Write only)
	writeFlagsOK = flagNoSync | flagCommits | flagVersions
)

// encodeWriteTail encodes a write's flags, commit notices and, when one of
// ops carries a version, the ops' versions.
func encodeWriteTail(e *wire.Enc, noSync bool, commits []notice, ops []store.Op) {
	var f uint64
	if noSync {
		f |= flagNoSync
	}
	if len(commits) > 0 {
		f |= flagCommits
	}
	versioned := slices.ContainsFunc(ops, func(op store.Op) bool { return op.Version != 0 })
	if versioned {
		f |= flagVersions
	}
	if f == 0 {
		return
	}
	e.U64(f)
	if len(commits) > 0 {
		e.U64(uint64(len(commits)))
		for _, c := range commits {
			e.U64(uint64(c.shard))
			e.U64(c.epoch)
			e.U64(c.id)
		}
	}
	if versioned {
		e.U64(uint64(len(ops)))
		for _, op := range ops {
			e.U64(op.Version)
		}
	}
}

// decodeWriteTail reads the optional flags, commit notices and versions
// after a write's ops, setting the versions on ops (a replicated write,
// whose records carry their versions, passes nil: versions fail it).
func decodeWriteTail(d *wire.Dec, ops []store.Op) (noSync bool, commits []store.PendingID, err error) {
	if d.Err != nil || len(d.B) == 0 {
		return false, nil, d.Done("write flags")
	}
	f := d.U64()
	if f&^writeFlagsOK != 0 {
		return false, nil, fmt.Errorf("cluster: unknown write flags %#x", f)
	}
	if f&flagCommits != 0 {
		n := d.Count()
		commits = make([]store.PendingID, 0, n)
		for range n {
			shard := d.U64()
			c := store.PendingID{Shard: uint16(shard), Epoch: d.U64(), ID: d.U64()}
			if d.Err != nil {
				break
			}
			if shard > math.MaxUint16 {
				return false, nil, fmt.Errorf("cluster: commit notice for shard %d", shard)
			}
			commits = append(commits, c)
		}
	}
	if f&flagVersions != 0 {
		if n := d.Count(); n != len(ops) {
			return false, nil, fmt.Errorf("cluster: %d versions for %d ops", n, len(ops))
		}
		for i := range ops {
			ops[i].Version = d.U64()
		}
	}
	return f&flagNoSync != 0, commits, d.Done("write flags")
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
func (rs *Set) onCoordinator(ctx context.Context, shard uint16, local func() error, remote func(ctx context.Context, to string) error) error {
	budget := 2 * rs.requestTimeout()
	if rs.stopping.Load() {
		budget = rs.leaseDuration() / 4
	}
	// The budget's context is made when a remote call or a wait between
	// rounds first needs it: local never takes one, so the usual read or
	// write, with this node as the shard's coordinator, pays for no
	// context and timer.
	at := time.Now().Add(budget)
	var dctx context.Context
	cancel := context.CancelFunc(func() {})
	defer func() { cancel() }()
	withBudget := func() context.Context {
		if dctx == nil {
			dctx, cancel = context.WithDeadline(ctx, at) //nolint:gosec // cancelled by the deferred call above
		}
		return dctx
	}
	backoff := 20 * time.Millisecond
	for {
		err := rs.onCoordinatorOnce(withBudget, shard, local, remote, transport.IsRetryable)
		if err == nil || !transport.IsRetryable(err) || !transport.Sleep(withBudget(), backoff) {
			return err
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// onCoordinatorOnce tries the live replicas of shard in preference order
// (locally when this node is the one), moving on while next(err); ctx
// gives the remote calls their context.
func (rs *Set) onCoordinatorOnce(ctx func() context.Context, shard uint16, local func() error,
	remote func(ctx context.Context, to string) error, next func(error) bool) error {
	var last error = ErrNoCoordinator
	for _, id := range rs.peers.Coordinators(shard) {
		if id == rs.cfg.NodeID {
			if !rs.canCoordinate(shard) {
				last = ErrNotReady
				continue
			}
			return local()
		}
		err := remote(ctx(), id)
		rs.peers.NoteCall(id, err)
		if err == nil || errors.Is(err, store.ErrNotFound) || !next(err) {
			return err
		}
		last = err
	}
	return last
}

func (rs *Set) requestTimeout() time.Duration { return rs.cfg.RequestTimeout }

// LocalGet reads a replicated key from this node's store (not the
// coordinator's), like localGet.
func (rs *Set) LocalGet(key []byte) ([]byte, error) { return rs.localGet(key) }

// localGet reads a replicated key from this node's store. A field doc
// reads as its fields value (store.DecodeFields), or not found when no
// field is live.
func (rs *Set) localGet(key []byte) ([]byte, error) {
	rec, err := rs.st.Get(key)
	if err != nil {
		return nil, err
	}
	return rs.recordValue(key, rec)
}

// recordValue returns the value of key's versioned record rec (aliasing
// it), ErrNotFound for a tombstone or a doc without live fields.
func (rs *Set) recordValue(key, rec []byte) ([]byte, error) {
	v, tomb, val, err := store.DecodeVersioned(rec)
	if err != nil {
		return nil, err
	}
	rs.clk.Observe(v)
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
func (rs *Set) localScan(lower, upper []byte, reverse bool, limit int, fn func(k, v []byte) (bool, error)) error {
	n := 0
	return rs.st.Scan(lower, upper, reverse, func(k, rec []byte) (bool, error) {
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

func encodeOps(e *wire.Enc, ops []store.Op) {
	e.U64(uint64(len(ops)))
	for _, op := range ops {
		e.U64(uint64(op.Kind))
		e.Bytes(op.Key)
		e.Bytes(op.Value)
	}
}

func decodeOps(d *wire.Dec, shard uint16) ([]store.Op, error) {
	n := d.Count()
	ops := make([]store.Op, 0, n)
	for range n {
		op := store.Op{Kind: store.OpKind(d.U64()), Key: d.Bytes(), Value: d.Bytes()}
		if d.Err != nil {
			break
		}
		if s, err := store.ShardOf(op.Key); err != nil || s != shard {
			return nil, fmt.Errorf("cluster: op key outside shard %d", shard)
		}
		// OpMergeFields comes only in wire.Write (a replica's ApplyVersioned
		// rejects it): wire.Replicate carries its versioned OpSet record.
		if op.Kind < store.OpSet || op.Kind > store.OpMergeFields {
			return nil, fmt.Errorf("cluster: unknown op kind %d", op.Kind)
		}
		ops = append(ops, op)
	}
	return ops, d.Done("ops")
}

// observeOps moves the clock past the versions of replicated records.
func (rs *Set) observeOps(ops []store.Op) error {
	for _, op := range ops {
		if op.Kind != store.OpSet {
			continue
		}
		v, _, _, err := store.DecodeVersioned(op.Value)
		if err != nil {
			return err
		}
		rs.clk.Observe(v)
	}
	return nil
}
