package replica

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// Replicas compare a shard in two levels (store.RangeDigest): a summary of
// the whole shard, then, when summaries differ, 64 bucket digests, and copy
// only the records of the buckets that differ. A key's bucket is a hash of
// the key and a bucket's digest covers every record's key and whole value,
// so both replicas bucket alike and a differing body under an equal version
// is found too. One wire.RangeDigest call does both levels: the caller sends its
// summary and gets the buckets only if the summaries differ.
//
// Catch-up (joining, returning, rebalancing) uses the same comparison over
// every record (no version cutoff) the first time it copies a shard from a
// source, so a replica that already holds most of a shard copies only what
// differs, and the source's change log after that (catchup.go);
// anti-entropy compares settled records (older than AntiEntropySettle).

// transfer is the progress of one queued shard's catch-up, guarded by the
// syncer's mu: what is left to copy from the source being synced from.
type transfer struct {
	from string
	// keys and bytes are what the current source sends (the records of
	// the buckets that differ), or, before the sync started, the size of
	// the shard at its first source; -1 while unknown.
	keys, bytes int64
	// copiedKeys and copiedBytes are what arrived from from so far.
	copiedKeys, copiedBytes int64
	// sized is set once the shard's size was asked for.
	sized bool
}

// remaining returns the keys and bytes left to copy, or -1 each if unknown.
func (t *transfer) remaining() (keys, bytes int64) {
	if t == nil || t.keys < 0 {
		return -1, -1
	}
	return max(t.keys-t.copiedKeys, 0), max(t.bytes-t.copiedBytes, 0)
}

// begin records that t's shard now syncs from src, which sends keys keys
// of bytes bytes. t may be nil.
func (s *syncer) begin(t *transfer, src string, keys, bytes int64) {
	if t == nil {
		return
	}
	s.mu.Lock()
	t.from, t.keys, t.bytes, t.copiedKeys, t.copiedBytes = src, keys, bytes, 0, 0
	s.remainingLocked()
	s.mu.Unlock()
}

// credit adds a copied page to t, which may be nil.
func (s *syncer) credit(t *transfer, keys, bytes int64) {
	if t == nil {
		return
	}
	s.mu.Lock()
	t.copiedKeys += keys
	t.copiedBytes += bytes
	s.remainingLocked()
	s.mu.Unlock()
}

// remainingLocked sets the remaining-sync gauges from the transfers of
// known size. s.mu must be held.
func (s *syncer) remainingLocked() {
	var keys, bytes int64
	for _, t := range s.transfers {
		if k, b := t.remaining(); k >= 0 {
			keys += k
			bytes += b
		}
	}
	s.rs.met.syncKeysRemaining.Set(float64(keys))
	s.rs.met.syncBytesRemaining.Set(float64(bytes))
}

// progress returns the source and the keys and bytes left of shard's
// catch-up (-1 when unknown).
func (s *syncer) progress(shard uint16) (from string, keys, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.transfers[shard]
	keys, bytes = t.remaining()
	if t != nil {
		from = t.from
	}
	return from, keys, bytes
}

// sizeBatch bounds the shards one wire.ShardSize request asks for: each is a
// scan on the source, and one answer must come within its timeout.
const sizeBatch = 16

// sizeQueued asks, once per queued shard, the shard's first source for its
// size, so a shard waiting its turn reports what it will copy. Shards whose
// source does not answer stay unknown.
func (s *syncer) sizeQueued() {
	rs := s.rs
	cur := rs.peers.Ring()
	s.mu.Lock()
	prev := s.prev
	var todo []uint16
	for _, sh := range s.queue {
		if t := s.transfers[sh]; t != nil && !t.sized {
			t.sized = true
			todo = append(todo, sh)
		}
	}
	s.mu.Unlock()
	bySource := map[string][]uint16{}
	for _, sh := range todo {
		if srcs := rs.syncSources(sh, prev, cur); len(srcs) > 0 {
			bySource[srcs[0]] = append(bySource[srcs[0]], sh)
		}
	}
	for src, shards := range bySource {
		for chunk := range slices.Chunk(shards, sizeBatch) {
			if rs.ctx.Err() != nil {
				return
			}
			sizes, err := rs.remoteShardSizes(src, chunk)
			if err != nil {
				rs.log.Debug("Asking a shard size failed", "peer", src, "err", err)
				continue
			}
			s.mu.Lock()
			for i, sh := range chunk {
				if t := s.transfers[sh]; t != nil && t.keys < 0 {
					t.from, t.keys, t.bytes = src, sizes[i][0], sizes[i][1]
				}
			}
			s.remainingLocked()
			s.mu.Unlock()
		}
	}
}

// remoteShardSizes asks peer for the key and byte counts of shards.
func (rs *Set) remoteShardSizes(peer string, shards []uint16) ([][2]int64, error) {
	var e wire.Enc
	e.Shards(shards)
	resp, err := rs.syncCall(rs.ctx, peer, wire.ShardSize, e.B)
	if err != nil {
		return nil, err
	}
	d := wire.Dec{B: resp}
	if n := d.Count(); n != len(shards) {
		return nil, fmt.Errorf("cluster: %d shard sizes for %d shards", n, len(shards))
	}
	out := make([][2]int64, len(shards))
	for i := range out {
		out[i] = [2]int64{int64(d.U64()), int64(d.U64())}
	}
	return out, d.Done("shard size")
}

// serveShardSize answers wire.ShardSize: shards -> keys and bytes of each.
func (rs *Set) serveShardSize(d *wire.Dec) ([]byte, error) {
	shards := d.Shards(rs.cfg.Shards)
	if len(shards) > rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: %d shards asked for, of %d", len(shards), rs.cfg.Shards)
	}
	if err := d.Done("shard size"); err != nil {
		return nil, err
	}
	var e wire.Enc
	e.U64(uint64(len(shards)))
	for _, sh := range shards {
		if int(sh) >= rs.cfg.Shards {
			return nil, fmt.Errorf("cluster: shard %d out of range", sh)
		}
		keys, bytes, err := rs.st.ShardSize(sh)
		if err != nil {
			return nil, err
		}
		e.U64(uint64(keys))
		e.U64(uint64(bytes))
	}
	return e.B, nil
}

// serveRangeDigest answers wire.RangeDigest: shard, version cutoff and the
// caller's summary -> whether the summaries are equal, and if not, this
// node's bucket digests (store.DigestBuckets of sum, keys, bytes).
func (rs *Set) serveRangeDigest(d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	cutoff := d.U64()
	summary := d.U64()
	if err := d.Done("range digest"); err != nil {
		return nil, err
	}
	if int(shard) >= rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: shard %d out of range", shard)
	}
	rd, err := rs.st.ShardRangeDigest(shard, cutoff)
	if err != nil {
		return nil, err
	}
	return encodeRangeDigest(rd.Summary() == summary, &rd), nil
}

// encodeRangeDigest encodes an wire.RangeDigest answer: equal, and unless
// equal the bucket count and each bucket's sum, keys and bytes.
func encodeRangeDigest(equal bool, rd *store.RangeDigest) []byte {
	var e wire.Enc
	e.Bool(equal)
	if equal {
		return e.B
	}
	e.U64(store.DigestBuckets)
	for _, b := range rd.Buckets {
		e.U64(b.Sum)
		e.U64(uint64(b.Keys))
		e.U64(uint64(b.Bytes))
	}
	return e.B
}

// decodeRangeDigest decodes an wire.RangeDigest answer.
func decodeRangeDigest(resp []byte) (equal bool, rd store.RangeDigest, err error) {
	d := wire.Dec{B: resp}
	if d.Bool() {
		return true, rd, d.Done("range digest")
	}
	if n := d.Count(); n != store.DigestBuckets && d.Err == nil {
		return false, rd, fmt.Errorf("cluster: range digest of %d buckets, want %d", n, store.DigestBuckets)
	}
	for i := range rd.Buckets {
		rd.Buckets[i] = store.BucketDigest{Sum: d.U64(), Keys: int64(d.U64()), Bytes: int64(d.U64())}
	}
	if err := d.Done("range digest"); err != nil {
		return false, store.RangeDigest{}, err
	}
	return false, rd, nil
}

// rangeDiff compares this node's records of shard with versions up to
// cutoff with peer's: it returns the mask of the buckets that differ (0
// when the shards are equal) and peer's digest (zero when equal).
func (rs *Set) rangeDiff(ctx context.Context, peer string, shard uint16, cutoff uint64) (uint64, store.RangeDigest, error) {
	mine, err := rs.st.ShardRangeDigest(shard, cutoff)
	if err != nil {
		return 0, store.RangeDigest{}, err
	}
	var e wire.Enc
	e.U64(uint64(shard))
	e.U64(cutoff)
	e.U64(mine.Summary())
	resp, err := rs.syncCall(ctx, peer, wire.RangeDigest, e.B)
	if err != nil {
		return 0, store.RangeDigest{}, err
	}
	equal, theirs, err := decodeRangeDigest(resp)
	if err != nil || equal {
		return 0, store.RangeDigest{}, err
	}
	// Summaries can differ with equal buckets only by a hash collision:
	// then there is nothing to copy either.
	return mine.Diff(&theirs), theirs, nil
}

// Repair copies from src the records of shard in the digest buckets that
// differ between the two replicas over versions up to cutoff, and returns
// the mask of those buckets and the number of records copied.
func (rs *Set) Repair(ctx context.Context, shard uint16, src string, cutoff uint64) (uint64, int64, error) {
	return rs.syncFrom(ctx, shard, src, cutoff, nil)
}

// syncFrom copies from src the records of shard that this node may lack:
// those of the buckets whose digests over versions up to cutoff differ. t,
// if not nil, tracks the progress. It returns the mask of the buckets it
// copied and the number of records.
func (rs *Set) syncFrom(ctx context.Context, shard uint16, src string, cutoff uint64, t *transfer) (uint64, int64, error) {
	mask, theirs, err := rs.rangeDiff(ctx, src, shard, cutoff)
	if err != nil {
		return 0, 0, fmt.Errorf("compare shard %d with %s: %w", shard, src, err)
	}
	rs.sync.begin(t, src, theirs.Keys(mask), theirs.Bytes(mask))
	if mask == 0 {
		return 0, 0, nil
	}
	rs.met.syncBuckets.Add(float64(bits.OnesCount64(mask)))
	n, err := rs.pullBuckets(ctx, shard, src, mask, t)
	if err != nil {
		return mask, n, fmt.Errorf("copy shard %d from %s: %w", shard, src, err)
	}
	return mask, n, nil
}

// quietSince reports whether this node's change log has no entry of shard
// after head (taken at the start of the previous anti-entropy round): no
// write reached the shard here for a whole round.
func (s *syncer) quietSince(shard uint16, head store.ChangeCursor) bool {
	if head.Incarnation == 0 {
		return false
	}
	changed, err := s.rs.st.ChangedSince(shard, head)
	return err == nil && !changed
}

// antiEntropy compares each ready local replica with the other live
// replicas and copies the buckets that differ from them; the other side
// does the same, so both converge.
func (s *syncer) antiEntropy() {
	rs := s.rs
	if rs.st.DiskLow() {
		return // a low disk stores no repair: the catch-up after it covers this
	}
	cur := rs.peers.Ring()
	under := 0
	prevHead := s.aeHead
	s.aeHead = rs.st.ChangeHead()
	for _, sh := range cur.ShardsOf(rs.cfg.NodeID) {
		shard := uint16(sh)
		if rs.ctx.Err() != nil {
			return
		}
		if !s.ready(shard) {
			under++
			continue
		}
		if slices.ContainsFunc(cur.Replicas(sh), func(id string) bool { return !rs.peers.Live(id) }) {
			under++
		}
		// Compare what settled (older than AntiEntropySettle): writes in
		// flight to the replicas would make every digest differ under load.
		// A shard quiet here since the last round compares every record
		// instead, which also renews this node's change-log cursors for it
		// (catchup.go), so a takeover long after the last catch-up still
		// copies only what changed since.
		cutoff := uint64(rs.now().Add(-AntiEntropySettle).UnixMilli()) << HLCLogicalBits
		quiet := s.quietSince(shard, prevHead)
		for _, peer := range rs.others(cur.Replicas(sh)) {
			if !rs.peers.Live(peer) {
				continue
			}
			if quiet {
				_, gen, _ := s.cursor(shard, peer)
				switch n, err := rs.digestCatchUp(rs.ctx, shard, peer, nil, gen); {
				case err != nil:
					rs.met.syncRuns.WithLabelValues("repair", "error").Inc()
				case n > 0:
					rs.met.syncRuns.WithLabelValues("repair", "ok").Inc()
				}
				continue
			}
			mask, theirs, err := rs.rangeDiff(rs.ctx, peer, shard, cutoff)
			if err != nil || mask == 0 {
				continue // an unreachable peer is the failure detector's business
			}
			if rs.log.Enabled(rs.ctx, slog.LevelDebug) {
				rs.log.Debug("Repairing shard buckets from a replica", "shard", shard, "peer", peer,
					"buckets", bits.OnesCount64(mask), "keys", theirs.Keys(mask))
			}
			rs.met.syncBuckets.Add(float64(bits.OnesCount64(mask)))
			if _, err := rs.pullBuckets(rs.ctx, shard, peer, mask, nil); err != nil {
				rs.met.syncRuns.WithLabelValues("repair", "error").Inc()
				continue
			}
			rs.met.syncRuns.WithLabelValues("repair", "ok").Inc()
		}
	}
	rs.met.underReplicated.Set(float64(under))
}
