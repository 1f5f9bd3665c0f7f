package conversation

import (
	"bytes"
	"context"
	"time"

	"github.com/imcluster/imcluster/node/store"
)

// maxTrimPerPass bounds the message ids one sweep pass collects per
// conversation (their id-index entries are deleted one by one; the messages
// themselves with one range deletion). The rest waits for the next pass.
const maxTrimPerPass = 10000

func (e *Engine) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	build := time.NewTicker(min(e.cfg.SweepInterval, orderBuildInterval))
	defer build.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := e.sweep(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("Sweeping retention failed", "err", err)
			}
		case <-build.C:
			if err := e.buildOrderIndexes(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("Building the order index failed", "err", err)
			}
		}
	}
}

// sweep runs one retention pass: it deletes messages and patches older than
// Retention, expired temporary conversations, stale de-duplication tokens
// and old reliable notifications, and builds and tidies the order index
// (indexOrderSweep).
func (e *Engine) sweep(ctx context.Context) error {
	now := e.nowMs()
	tidy := e.orderTidyDue(now)
	err := e.forEachShardApp(func(shard uint16, app string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := e.shardConvs(shard, app)
		if err != nil {
			return err
		}
		built, err := e.indexOrderBuilt(shard, app)
		if err != nil {
			return err
		}
		if tidy || !built {
			if err := e.indexOrderSweep(ctx, shard, app, recs); err != nil {
				return err
			}
		}
		for _, r := range recs {
			if r.expired(now) {
				err = e.deleteConv(app, r.ID)
			} else {
				err = e.trimConv(app, r.ID, now-e.cfg.Retention.Milliseconds())
			}
			if err != nil {
				return err
			}
		}
		if err := e.sweepDedup(shard, app, now); err != nil {
			return err
		}
		return e.sweepNotifications(shard, app, now-e.cfg.NotificationRetention.Milliseconds())
	})
	if err == nil && tidy {
		e.orderTidied.Store(now)
	}
	return err
}

// shardConvs returns the conversation records of app in shard.
func (e *Engine) shardConvs(shard uint16, app string) ([]*convRecord, error) {
	var recs []*convRecord
	err := e.st.ScanPrefix(store.NewKey(shard, app, store.FamConv).Bytes(), false, func(_, v []byte) (bool, error) {
		r, err := decodeConv(v)
		if err != nil {
			return false, internal("decode conversation", err)
		}
		recs = append(recs, r)
		return true, nil
	})
	return recs, err
}

// trimConv deletes the conversation's messages and patches older than cutoff.
func (e *Engine) trimConv(app, cid string, cutoff int64) error {
	prefix := e.convKey(app, cid, store.FamMsg)
	upper := prefix.Int64(cutoff).Bytes()
	var ids []message // ID and Ts of each
	err := e.st.Scan(prefix.Bytes(), upper, false, func(_, v []byte) (bool, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return false, err
		}
		ids = append(ids, message{ID: m.ID, Ts: m.Ts})
		return len(ids) < maxTrimPerPass, nil
	})
	if err != nil || len(ids) == 0 {
		return err
	}
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer st.mu.Unlock()
	b := e.st.NewBatch()
	last := ids[len(ids)-1]
	m, err := e.lookupMessage(app, cid, last.ID)
	if err != nil {
		b.Close()
		return err
	}
	end := upper
	if len(ids) == maxTrimPerPass && m != nil {
		end = store.PrefixEnd(e.msgKey(app, cid, m.Ts, m.ID))
	}
	b.DeleteRange(prefix.Bytes(), end)
	for _, m := range ids {
		e.deleteMessageIDIndex(b, app, cid, m.ID, m.Ts)
	}
	pp := e.convKey(app, cid, store.FamPatch)
	b.DeleteRange(pp.Bytes(), pp.Int64(cutoff).Bytes())
	if err := e.st.Commit(b); err != nil {
		return internal("commit retention", err)
	}
	e.metrics.swept.WithLabelValues("messages").Add(float64(len(ids)))
	return nil
}

// deleteConv removes an expired temporary conversation with its messages,
// indexes and the members' client entries.
func (e *Engine) deleteConv(app, cid string) error {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadConv(app, cid)
	if err != nil || r == nil || !r.expired(e.nowMs()) {
		return err
	}
	b := e.st.NewBatch()
	b.Delete(e.convKey(app, cid, store.FamConv).Bytes())
	for _, fam := range []store.Family{store.FamMsg, store.FamMsgID, store.FamPatch, store.FamDedup} {
		p := e.convKey(app, cid, fam).Bytes()
		b.DeleteRange(p, store.PrefixEnd(p))
	}
	if r.Unique {
		if err := e.dropUniqueIndex(b, app, cid, e.uniqueIndexKey(app, "tmp:"+r.UniqueID)); err != nil {
			return err
		}
	}
	for _, id := range r.Members {
		e.unindexClient(b, app, id, cid)
	}
	if err := e.commitConv(st, app, cid, b); err != nil {
		return internal("commit conversation expiry", err)
	}
	e.rooms.drop(app, cid)
	e.metrics.swept.WithLabelValues("conversations").Inc()
	return nil
}

func (e *Engine) sweepDedup(shard uint16, app string, now int64) error {
	cutoff := now - e.cfg.DedupWindow.Milliseconds()
	return e.deleteWhere(store.NewKey(shard, app, store.FamDedup).Bytes(), "dedup", func(_, v []byte) bool {
		return len(v) < 16 || int64(beUint64(v[8:16])) < cutoff
	})
}

func (e *Engine) sweepNotifications(shard uint16, app string, cutoff int64) error {
	return e.deleteWhere(store.NewKey(shard, app, store.FamNotif).Bytes(), "notifications", func(k, _ []byte) bool {
		r, _, _, _ := store.ReadKey(k)
		_ = r.Str()
		ts := r.Int64()
		return r.Err() == nil && ts < cutoff
	})
}

// deleteWhere deletes the keys under prefix for which old reports true.
func (e *Engine) deleteWhere(prefix []byte, kind string, old func(k, v []byte) bool) error {
	b := e.st.NewBatch()
	n := 0
	err := e.st.ScanPrefix(prefix, false, func(k, v []byte) (bool, error) {
		if old(k, v) {
			b.Delete(k)
			n++
		}
		return true, nil
	})
	if err != nil {
		b.Close()
		return internal("scan "+kind, err)
	}
	if err := e.commitIfAny(b); err != nil {
		return internal("commit "+kind, err)
	}
	e.metrics.swept.WithLabelValues(kind).Add(float64(n))
	return nil
}

// forEachShardApp calls fn for every (shard, app) pair that holds keys, in
// the shards this node coordinates.
func (e *Engine) forEachShardApp(fn func(shard uint16, app string) error) error {
	for _, shard := range e.shards.Coordinated() {
		if err := e.forEachApp(shard, fn); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) forEachApp(shard uint16, fn func(shard uint16, app string) error) error {
	{
		lower := store.ShardPrefix(shard)
		end := store.PrefixEnd(lower)
		for {
			var app string
			var next []byte
			found := false
			err := e.st.Scan(lower, end, false, func(k, _ []byte) (bool, error) {
				r, _, a, _ := store.ReadKey(k)
				full := store.NewKey(shard, a, 0).Bytes()
				next = store.PrefixEnd(full[:len(full)-1])
				if r.Err() != nil || bytes.Compare(next, k) <= 0 {
					// Not one of our keys: step past it.
					a, next = "", append(append([]byte(nil), k...), 0)
				}
				app, found = a, true
				return false, nil
			})
			if err != nil {
				return internal("seek app", err)
			}
			if !found {
				return nil
			}
			if app != "" {
				if err := fn(shard, app); err != nil {
					return err
				}
			}
			if next == nil || bytes.Compare(next, end) >= 0 {
				return nil
			}
			lower = next
		}
	}
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}
