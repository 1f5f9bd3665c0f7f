package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Catch-up by change log. A catch-up from a source (a takeover's, a
// returning replica's, a newly placed shard's) makes this node hold every
// record the source holds. The first one from a source compares range
// digests and copies the buckets that differ (syncFrom); before it, the
// source names the head of its change log (store.ChangeHead), and once the
// copy is done this node keeps that head as its cursor for (shard, source):
// it holds everything the source held at the cursor. A later catch-up from
// that source asks only for the records of the keys the source logged after
// the cursor (wire.ChangeScan) and moves the cursor to the source's head
// then. The source logs every record it makes visible (commits, roll-
// forwards, sync and repair pages) in the same batch, and its head never
// passes a batch still being committed, so nothing is skipped.
//
// The cursors live in memory (syncer.cursors): a restarted node has none
// and compares digests once per source; a deleted copy of a shard forgets
// its cursors. The source answers "gone" when the cursor is from an earlier
// run of it or its log was trimmed past the cursor (store.ChangeLogMaxAge,
// store.ChangeLogMaxEntries); then, and with a source of an earlier build,
// the catch-up compares digests as before. Anti-entropy always compares
// digests: it is the safety net that needs no history.

// errChangesGone reports that a source's change log does not reach back to
// this node's cursor.
var errChangesGone = errors.New("cluster: the source's change log does not reach back to the cursor")

// changePageBytes bounds the records one wire.ChangeScan answer carries (it
// stops after the entry that passes it); changeScanBudget bounds the
// entries it examines, however few records they still have.
const (
	changePageBytes  = 1 << 20
	changeScanBudget = 16 * syncPage
)

// catchUpFrom makes this node hold every record src holds of shard: by the
// change log after this node's cursor for src when it has one the source
// still reaches, else by comparing digests. It returns the records copied.
// t, if not nil, tracks the progress.
func (rs *Set) catchUpFrom(ctx context.Context, shard uint16, src string, t *transfer) (int64, error) {
	cur, gen, ok := rs.sync.cursor(shard, src)
	if ok {
		n, h, err := rs.pullChanges(ctx, shard, src, cur, t)
		switch {
		case err == nil:
			rs.sync.setCursor(shard, src, h, gen)
			rs.met.catchUps.WithLabelValues("changes").Inc()
			return n, nil
		case !errors.Is(err, errChangesGone):
			return n, err
		}
	}
	n, err := rs.digestCatchUp(ctx, shard, src, t, gen)
	if err == nil {
		rs.met.catchUps.WithLabelValues("digest").Inc()
	}
	return n, err
}

// digestCatchUp makes this node hold every record src holds of shard by
// comparing range digests over every record and copying the buckets that
// differ, and then keeps src's change-log head from before the comparison
// as this node's cursor for src (unless shard's copy here was deleted since
// generation gen). It returns the records copied.
func (rs *Set) digestCatchUp(ctx context.Context, shard uint16, src string, t *transfer, gen uint64) (int64, error) {
	// The source's head before the copy: what the copy covers.
	_, head, err := rs.pullChanges(ctx, shard, src, store.ChangeCursor{}, nil)
	if err != nil && !errors.Is(err, errChangesGone) {
		rs.log.Debug("Asking a change log head failed", "shard", shard, "peer", src, "err", err)
	}
	_, n, err := rs.syncFrom(ctx, shard, src, ^uint64(0), t)
	if err != nil {
		return n, err
	}
	if head.Incarnation != 0 {
		rs.sync.setCursor(shard, src, head, gen)
	}
	return n, nil
}

// pullChanges copies from src the records of the keys it logged for shard
// after cursor from, up to its head, rate-limited like pullBuckets, and
// returns them and the head reached. It returns errChangesGone, with the
// source's head, when the source cannot serve from (a zero from only asks
// for the head).
func (rs *Set) pullChanges(ctx context.Context, shard uint16, src string, from store.ChangeCursor, t *transfer) (int64, store.ChangeCursor, error) {
	after, upTo := from.Seq, uint64(0)
	var copied int64
	rs.sync.begin(t, src, -1, -1)
	for {
		var e wire.Enc
		e.U64(uint64(shard))
		e.U64(from.Incarnation)
		e.U64(after)
		e.U64(upTo)
		e.U64(syncPage)
		resp, err := rs.syncCall(ctx, src, wire.ChangeScan, e.B)
		if err != nil {
			return copied, store.ChangeCursor{}, err
		}
		pg, err := decodeChangePage(resp, shard)
		if err != nil {
			return copied, store.ChangeCursor{}, err
		}
		head := store.ChangeCursor{Incarnation: pg.incarnation, Seq: pg.head}
		if !pg.ok {
			return copied, head, errChangesGone
		}
		if upTo != 0 && (pg.head != upTo || pg.incarnation != from.Incarnation) {
			return copied, head, fmt.Errorf("cluster: change scan of shard %d answered head %d, asked %d", shard, pg.head, upTo)
		}
		upTo = pg.head
		if err := rs.applySyncPage(ctx, pg.ops, t); err != nil {
			return copied, head, err
		}
		copied += int64(len(pg.ops))
		if !pg.more {
			return copied, head, nil
		}
		if pg.next <= after || pg.next > upTo {
			return copied, head, fmt.Errorf("cluster: change scan cursor of shard %d did not advance", shard)
		}
		after = pg.next
	}
}

// applyCopied stores records copied from another replica. While the disk
// is low they are refused (store.ErrDiskLow), except for a shard this node
// coordinates for want of a replica with space (standAside false): it
// catches up what it needs to serve it (store.ApplyVersionedInReserve).
func (rs *Set) applyCopied(ops []store.Op) error {
	if rs.st.DiskLow() {
		if shard, err := store.ShardOf(ops[0].Key); err == nil && !rs.standAside(shard) {
			return rs.st.ApplyVersionedInReserve(ops)
		}
	}
	return refusedLow(rs.st.ApplyVersioned(ops))
}

// applySyncPage stores a page of records copied from another replica,
// counts it, credits t (which may be nil) and waits out the page's share
// of SyncKeysPerSecond.
func (rs *Set) applySyncPage(ctx context.Context, ops []store.Op, t *transfer) error {
	if len(ops) == 0 {
		return nil
	}
	if err := rs.observeOps(ops); err != nil {
		return err
	}
	if err := rs.applyCopied(ops); err != nil {
		return err
	}
	var size int64
	for _, op := range ops {
		size += int64(len(op.Key) + len(op.Value))
	}
	rs.met.syncKeys.Add(float64(len(ops)))
	rs.sync.credit(t, int64(len(ops)), size)
	pause := time.Duration(float64(len(ops)) / float64(rs.cfg.SyncKeysPerSecond) * float64(time.Second))
	if !transport.Sleep(ctx, pause) {
		return ctx.Err()
	}
	return nil
}

// changePage is a decoded wire.ChangeScan answer.
type changePage struct {
	incarnation, head uint64
	ok                bool
	ops               []store.Op
	next              uint64
	more              bool
}

// decodeChangePage decodes a wire.ChangeScan answer: the source's
// incarnation and head (the scan's upper bound), whether it serves the
// cursor, and if so the records, the seq to continue after and whether more
// follow.
func decodeChangePage(resp []byte, shard uint16) (changePage, error) {
	d := wire.Dec{B: resp}
	pg := changePage{incarnation: d.U64(), head: d.U64(), ok: d.Bool()}
	if !pg.ok {
		return pg, d.Done("change scan")
	}
	ops, err := decodeRecords(&d, shard)
	if err != nil {
		return changePage{}, err
	}
	pg.ops = ops
	pg.next, pg.more = d.U64(), d.Bool()
	if err := d.Done("change scan"); err != nil {
		return changePage{}, err
	}
	return pg, nil
}

// serveChangeScan answers wire.ChangeScan: shard, the caller's cursor
// (incarnation, after), the head to scan up to (0: this node's head now)
// and a record limit -> this node's incarnation and the head, whether it
// serves the cursor, and if so the current records of the keys logged
// after it (each once per page; deleted ones left out), the seq to
// continue after and whether more follow.
func (rs *Set) serveChangeScan(d *wire.Dec) ([]byte, error) {
	shard := uint16(d.U64())
	from := store.ChangeCursor{Incarnation: d.U64(), Seq: d.U64()}
	upTo := d.U64()
	limit := pageLimit(int(d.U64()))
	if err := d.Done("change scan"); err != nil {
		return nil, err
	}
	if int(shard) >= rs.cfg.Shards {
		return nil, fmt.Errorf("cluster: shard %d out of range", shard)
	}
	head := rs.st.ChangeHead()
	if upTo == 0 || upTo > head.Seq {
		upTo = head.Seq
	}
	var e wire.Enc
	e.U64(head.Incarnation)
	e.U64(upTo)
	if from.Incarnation != head.Incarnation || from.Seq > upTo {
		e.Bool(false)
		return e.B, nil
	}
	var body wire.Enc
	n, size, examined := 0, 0, 0
	next, stopped := from.Seq, false
	seen := map[string]struct{}{}
	err := rs.st.ScanChanges(shard, from, upTo, func(seq uint64, keys [][]byte) (bool, error) {
		for _, k := range keys {
			if _, ok := seen[string(k)]; ok {
				continue
			}
			seen[string(k)] = struct{}{}
			v, err := rs.st.Get(k)
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted since (retention, a deleted copy)
			}
			if err != nil {
				return false, err
			}
			body.Bytes(k)
			body.Bytes(v)
			n++
			size += len(k) + len(v)
		}
		next = seq
		examined++
		stopped = n >= limit || size >= changePageBytes || examined >= changeScanBudget
		return !stopped, nil
	})
	if errors.Is(err, store.ErrChangesTrimmed) {
		e.Bool(false)
		return e.B, nil
	}
	if err != nil {
		return nil, err
	}
	if !stopped {
		next = upTo // every entry up to the head was read
	}
	e.Bool(true)
	e.U64(uint64(n))
	e.B = append(e.B, body.B...)
	e.U64(next)
	e.Bool(next < upTo)
	return e.B, nil
}
