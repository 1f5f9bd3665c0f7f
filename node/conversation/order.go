package conversation

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/imcluster/imcluster/node/query"
	"github.com/imcluster/imcluster/node/store"
)

// The order index (store.FamOrder) serves app-wide conv/query sorted by
// "-lm" (the default) or "-updatedAt": per shard and app, one entry per
// conversation and order, key (^value, cid), in the conversation's own
// shard. Writes keep it in the batch that changes the value (putConv,
// sends, imports, deletes); the sweeper builds it for stored conversations
// and writes the order's marker once the shard's index covers them all,
// and removes entries left behind by races (indexOrderSweep). A query walks
// the index of every shard merged in order and loads only the
// conversations it reaches (orderedDocs).
//
// The walk is exact as long as every indexed conversation has an entry at
// or before its position: an entry for a value at least its current one.
// Writes keep that true; stale entries for lower values (a concurrent send
// committed out of order) or for deleted conversations only cost the walk
// a skipped entry until the next sweep. A send's move of the lm entry
// deletes the old entry with a whole-record tombstone like any replicated
// delete: the index keeps one per message until the store purges it, 7
// days later (store.RecordTombstoneGrace).
// Temporary conversations, never query results, are not indexed.
const (
	orderLM      = "lm"
	orderUpdated = "updatedAt"
)

// orderWalkBatch bounds the index entries one shard fetch of a walk reads
// (about 50 bytes each). A walk's first round reads skip+limit+1 of them
// per shard, at most this: S times 11 for the default limit of 10.
const orderWalkBatch = 64

// orderSweepBatch bounds the index writes of one sweeper commit.
const orderSweepBatch = 256

// orderTidyInterval is how often the sweeper tidies the order index of
// every shard (indexOrderSweep reads each conversation's newest message):
// every pass at the default SweepInterval; a shard without its marker is
// built at the next pass whatever the interval.
const orderTidyInterval = 10 * time.Minute

// orderBuildInterval is how often the sweeper looks for shards it
// coordinates whose order index is not built yet (a Get of the marker per
// shard and app) and builds them (SweepInterval when shorter): conversations
// stored before the index existed, or a shard whose first conversation of
// an app is new, are served by the index within about this long.
const orderBuildInterval = 30 * time.Second

// buildOrderIndexes builds the order index of every (shard, app) this node
// coordinates that has no marker yet.
func (e *Engine) buildOrderIndexes(ctx context.Context) error {
	return e.forEachShardApp(func(shard uint16, app string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		built, err := e.indexOrderBuilt(shard, app)
		if err != nil || built {
			return err
		}
		recs, err := e.shardConvs(shard, app)
		if err != nil {
			return err
		}
		return e.indexOrderSweep(ctx, shard, app, recs)
	})
}

// orderTidyDue reports whether this sweep pass tidies every shard's index.
func (e *Engine) orderTidyDue(nowMs int64) bool {
	return nowMs-e.orderTidied.Load() >= orderTidyInterval.Milliseconds()
}

// indexOrderBuilt reports whether the order index of (shard, app) covers
// the shard: the marker indexOrderSweep writes last.
func (e *Engine) indexOrderBuilt(shard uint16, app string) (bool, error) {
	_, err := e.st.Get(store.OrderIndexPrefix(shard, app, orderUpdated).Bytes())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, internal("load order index marker", err)
	}
	return true, nil
}

// orderOf returns the index serving a sort spec, or "".
func orderOf(s query.Sort) string {
	col, desc, ok := s.Single()
	if !ok || !desc || (col != orderLM && col != orderUpdated) {
		return ""
	}
	return col
}

func indexed(r *convRecord) bool { return r.Kind != convTemporary }

func (e *Engine) orderKey(app, cid, order string, v int64) []byte {
	return store.OrderIndexKey(e.shards.ConvShard(app, cid), app, order, v, cid)
}

// indexConvOrder adds to b the order index changes of writing r (putConv):
// a new conversation gets its updatedAt entry and an lm entry at 0 (no
// message), a changed updatedAt moves its entry.
func (e *Engine) indexConvOrder(b *store.Batch, app string, r *convRecord) {
	if !indexed(r) {
		return
	}
	switch {
	case !r.orderIndexed:
		b.Set(e.orderKey(app, r.ID, orderLM, 0), nil)
	case r.Updated == r.indexedUpdated:
		return
	default:
		b.Delete(e.orderKey(app, r.ID, orderUpdated, r.indexedUpdated))
	}
	b.Set(e.orderKey(app, r.ID, orderUpdated, r.Updated), nil)
	r.orderIndexed, r.indexedUpdated = true, r.Updated
}

// indexLastMessage moves cid's lm entry from prev (the timestamp of the
// conversation's previous stored message, 0 for none) to ts.
func (e *Engine) indexLastMessage(b *store.Batch, app, cid string, prev, ts int64) {
	if prev == ts {
		return
	}
	b.DeleteOwned(e.orderKey(app, cid, orderLM, prev)) // keys built for this write
	b.SetOwned(e.orderKey(app, cid, orderLM, ts), nil)
}

// unindexConvOrder adds to b the deletion of r's entries (r is being
// deleted); last is its newest message or nil.
func (e *Engine) unindexConvOrder(b *store.Batch, app string, r *convRecord, last *message) {
	b.Delete(e.orderKey(app, r.ID, orderUpdated, r.Updated))
	b.Delete(e.orderKey(app, r.ID, orderLM, last.ts()))
}

// indexOrderSweep makes the order index of (shard, app) match recs, the
// shard's conversations as the sweeper read them: it adds missing entries,
// deletes entries for lower values than the current ones and entries of
// conversations that no longer exist, and then writes each order's marker
// if missing. Entries a concurrent write adds are kept (their values are
// not lower than what recs hold).
func (e *Engine) indexOrderSweep(ctx context.Context, shard uint16, app string, recs []*convRecord) error {
	want := map[string]map[string]int64{orderLM: {}, orderUpdated: {}}
	for _, r := range recs {
		if !indexed(r) {
			continue
		}
		last, err := e.newestMessage(app, r.ID)
		if err != nil {
			return err
		}
		want[orderLM][r.ID] = last.ts()
		want[orderUpdated][r.ID] = r.Updated
	}
	w := &sweepWriter{e: e, b: e.st.NewBatch()}
	for _, order := range []string{orderLM, orderUpdated} {
		built, err := e.sweepOrder(ctx, shard, app, order, want[order], w)
		if err != nil {
			return err
		}
		if err := w.flush(); err != nil {
			return err
		}
		if !built {
			w.b.Set(store.OrderIndexPrefix(shard, app, order).Bytes(), nil)
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepOrder queues in w the changes that make one order of (shard, app)
// match want (cid to value) and reports whether its marker exists.
func (e *Engine) sweepOrder(ctx context.Context, shard uint16, app, order string, want map[string]int64, w *sweepWriter) (bool, error) {
	built := false
	present := map[string]bool{}
	var drop, orphans [][]byte
	err := e.st.ScanPrefix(store.OrderIndexPrefix(shard, app, order).Bytes(), false, func(k, _ []byte) (bool, error) {
		v, cid, marker, err := store.ReadOrderIndexKey(k)
		switch cur, ok := want[cid]; {
		case err != nil:
			drop = append(drop, slices.Clone(k)) // not a key this version writes
		case marker:
			built = true
		case !ok:
			orphans = append(orphans, slices.Clone(k))
		case v == cur:
			present[cid] = true
		case v < cur:
			drop = append(drop, slices.Clone(k))
		}
		return ctx.Err() == nil, ctx.Err()
	})
	if err != nil {
		return false, internal("scan order index", err)
	}
	for _, k := range orphans {
		_, cid, _, _ := store.ReadOrderIndexKey(k)
		r, err := e.loadConv(app, cid) // created after the sweeper read recs?
		if err != nil {
			return false, err
		}
		if r == nil || !indexed(r) {
			drop = append(drop, k)
		}
	}
	for _, k := range drop {
		w.b.Delete(k)
		if err := w.maybeFlush(); err != nil {
			return false, err
		}
	}
	for cid, v := range want {
		if !present[cid] {
			w.b.Set(store.OrderIndexKey(shard, app, order, v, cid), nil)
			if err := w.maybeFlush(); err != nil {
				return false, err
			}
		}
	}
	return built, nil
}

// sweepWriter commits the sweeper's index writes in batches of
// orderSweepBatch.
type sweepWriter struct {
	e *Engine
	b *store.Batch
}

func (w *sweepWriter) maybeFlush() error {
	if len(w.b.Ops()) < orderSweepBatch {
		return nil
	}
	return w.flush()
}

func (w *sweepWriter) flush() error {
	if w.b != nil && !w.b.Empty() {
		if err := w.e.st.Commit(w.b); err != nil {
			return internal("commit order index", err)
		}
	}
	w.b = w.e.st.NewBatch()
	return nil
}

// orderEntry is one order index entry, or a conversation's position in
// the order: value descending, then cid ascending.
type orderEntry struct {
	v   int64
	cid string
}

func (a orderEntry) compare(b orderEntry) int {
	if c := cmp.Compare(b.v, a.v); c != 0 {
		return c
	}
	return cmp.Compare(a.cid, b.cid)
}

// orderCursor reads one shard's index in order, orderWalkBatch entries per
// fetch.
type orderCursor struct {
	prefix []byte
	lower  []byte // the next fetch starts here
	size   int    // entries per fetch
	buf    []orderEntry
	done   bool
	built  bool
}

// fetch reads the next entries into c.buf; the first fetch also learns
// whether the index covers the shard (its marker).
func (c *orderCursor) fetch(st store.KV) error {
	var last []byte
	c.buf = c.buf[:0]
	err := st.Scan(c.lower, store.PrefixEnd(c.prefix), false, func(k, _ []byte) (bool, error) {
		last = append(last[:0], k...) // k is valid during the call only
		v, cid, marker, err := store.ReadOrderIndexKey(k)
		if err != nil {
			return false, internal("decode order index key", err)
		}
		if marker {
			c.built = true
			return true, nil
		}
		c.buf = append(c.buf, orderEntry{v: v, cid: cid})
		return len(c.buf) < c.size, nil
	})
	if err != nil {
		return err
	}
	if len(c.buf) < c.size {
		c.done = true
	}
	c.size = min(2*c.size, orderWalkBatch) // a walk that goes on may go far
	if last != nil {
		c.lower = append(last, 0)
	}
	return nil
}

// orderedDocs returns the documents of app's conversations that match
// filter and the caller may see, walking the order index of every shard
// merged: at least the first need of them in the order (all if fewer), and
// any other it met (the caller sorts and cuts). A shard whose index is not
// built yet is scanned whole instead. Every conversation loaded is charged
// to budget.
func (e *Engine) orderedDocs(ctx context.Context, c Caller, flag int32, filter *query.Filter, lim QueryLimits,
	budget *scanBudget, order string, need int) ([]map[string]any, error) {
	cursors, err := e.openOrderCursors(ctx, c.App, order, min(need+1, orderWalkBatch))
	if err != nil {
		return nil, err
	}
	w := orderWalk{e: e, c: c, flag: flag, filter: filter, lim: lim, order: order, now: e.nowMs(), seen: map[string]bool{}}
	var open []*orderCursor
	for _, cur := range cursors {
		if cur.built {
			open = append(open, cur)
			continue
		}
		shard, _ := store.ShardOf(cur.prefix)
		if err := e.scanConvs(ctx, shard, c.App, budget, w.add); err != nil {
			return nil, err
		}
	}
	for {
		head := -1
		for i, cur := range open {
			if len(cur.buf) > 0 && (head < 0 || cur.buf[0].compare(open[head].buf[0]) < 0) {
				head = i
			}
		}
		if head < 0 || w.settled(open[head].buf[0]) >= need {
			return w.docs, nil
		}
		cur := open[head]
		ent := cur.buf[0]
		cur.buf = cur.buf[1:]
		if len(cur.buf) == 0 && !cur.done {
			if err := cur.fetch(e.st); err != nil {
				return nil, err
			}
		}
		if w.seen[ent.cid] {
			continue
		}
		w.seen[ent.cid] = true
		if err := budget.charge(ctx); err != nil {
			return nil, err
		}
		r, err := e.loadConv(c.App, ent.cid)
		if err != nil {
			return nil, err
		}
		if r != nil {
			if err := w.add(r); err != nil {
				return nil, err
			}
		}
	}
}

// openOrderCursors makes one cursor per shard, reading size entries per
// fetch, and fetches its first entries (a scatter over the shards).
func (e *Engine) openOrderCursors(ctx context.Context, app, order string, size int) ([]*orderCursor, error) {
	cursors := make([]*orderCursor, e.shards.Count())
	for shard := range cursors {
		prefix := store.OrderIndexPrefix(uint16(shard), app, order).Bytes()
		cursors[shard] = &orderCursor{prefix: prefix, lower: prefix, size: size}
	}
	err := e.scatter(ctx, func(shard int) error { return cursors[shard].fetch(e.st) })
	return cursors, err
}

// orderWalk collects the results of one ordered walk.
type orderWalk struct {
	e      *Engine
	c      Caller
	flag   int32
	filter *query.Filter
	lim    QueryLimits
	order  string
	now    int64
	seen   map[string]bool
	docs   []map[string]any
	// pending holds the positions of the results not yet known to come
	// before the walk's next entry; done counts the others.
	pending []orderEntry
	done    int
}

// add makes r a result if it is one, at its current position.
func (w *orderWalk) add(r *convRecord) error {
	d, last, err := w.e.queryDoc(w.c, w.flag, w.filter, w.lim, r, w.now)
	if err != nil || d == nil {
		return err
	}
	w.seen[r.ID] = true
	pos := orderEntry{v: r.Updated, cid: r.ID}
	if w.order == orderLM {
		pos.v = last.ts()
	}
	w.docs = append(w.docs, d)
	w.pending = append(w.pending, pos)
	return nil
}

// settled returns how many results come before next: no conversation the
// walk has not reached yet can come before them (its entries are at next
// or after, and its position is not before its entries).
func (w *orderWalk) settled(next orderEntry) int {
	w.pending = slices.DeleteFunc(w.pending, func(p orderEntry) bool {
		if p.compare(next) < 0 {
			w.done++
			return true
		}
		return false
	})
	return w.done
}
