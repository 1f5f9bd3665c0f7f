package conversation

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/query"
	"github.com/imcluster/imcluster/node/store"
)

// Query flags (ConvCommand.flag).
const (
	flagCompact     = 1 // omit m
	flagLastMessage = 2 // include msg, msg_mid, ...
)

// Query paging (spec 3.8.2).
const (
	defaultQueryLimit = 10
	maxQueryLimit     = 1000 // the JS SDK resolves up to 999 ids in one $in query
	defaultQuerySort  = "-lm"
)

// doc returns the conversation as a query/result document (spec 3.8.5);
// last is its newest message or nil. The map shares column values with r.
func (r *convRecord) doc(flag int32, last *message) map[string]any {
	d := make(map[string]any, len(r.Columns)+16)
	maps.Copy(d, r.Columns)
	d["objectId"] = r.ID
	d["c"] = r.Creator
	d["m"] = nonNil(r.Members)
	d["mu"] = nonNil(r.Muted)
	d["tr"] = r.Kind == convTransient
	d["unique"] = r.Unique
	if r.Unique {
		d["uniqueId"] = r.UniqueID
	}
	d["createdAt"] = protocol.ISODate(r.Created)
	d["updatedAt"] = protocol.ISODate(r.Updated)
	if last != nil {
		d["lm"] = map[string]any{"__type": "Date", "iso": protocol.ISODate(last.Ts)}
	}
	if r.Kind == convTemporary {
		d["ttl"] = r.TTL
		d["temp"] = true
		d["conv_type"] = convTemporary
	}
	if flag&flagLastMessage != 0 && last != nil {
		lastMessageFields(d, last)
	}
	return d
}

func lastMessageFields(d map[string]any, l *message) {
	if l.IsBin {
		d["msg"] = base64.StdEncoding.EncodeToString(l.Bin)
		d["bin"] = true
	} else {
		d["msg"] = l.Data
	}
	d["msg_mid"] = l.ID
	d["msg_from"] = l.From
	d["msg_timestamp"] = l.Ts
	if l.PatchTs > 0 {
		d["patch_timestamp"] = l.PatchTs
	}
	if l.MentionAll {
		d["mention_all"] = true
	}
	if len(l.MentionPids) > 0 {
		d["mention_pids"] = l.MentionPids
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func queryFailed(err error) error {
	if errors.Is(err, query.ErrInvalid) {
		return protocol.ErrConversationQueryFailed.WithDetail("%s", err.Error())
	}
	return err
}

// MaxQueryResultBytes bounds the JSON of one conv/query answer. Results
// beyond it are cut (the SDKs page with skip and limit): 256 KiB is half the
// outgoing frame limit after the base64 subprotocol's 4/3 expansion. Without
// the cut six conversations carrying large attributes closed the socket of
// every member whose default query returned them.
const MaxQueryResultBytes = 256 << 10

// errScanBudget ends a scan that examined more records than its budget;
// errQueryDeadline one whose request deadline passed. Neither is a
// transport error, so the cluster's scan does not retry them.
var (
	errScanBudget    = errors.New("conversation: query scan budget exceeded")
	errQueryDeadline = errors.New("conversation: query deadline passed")
)

// scanBudget counts the conversation records one query examines. It is
// shared by the query's concurrent shard scans.
type scanBudget struct {
	limit int
	used  atomic.Int64
}

// charge counts one examined record; it fails with errScanBudget past the
// limit and with errQueryDeadline once ctx is done.
func (b *scanBudget) charge(ctx context.Context) error {
	if b.used.Add(1) > int64(b.limit) {
		return errScanBudget
	}
	if ctx.Err() != nil {
		return errQueryDeadline
	}
	return nil
}

func (e *Engine) queryLimits(app string) QueryLimits {
	l := DefaultQueryLimits
	if e.cfg.QueryLimits != nil {
		l = e.cfg.QueryLimits(app)
	}
	if l.ScanBudget <= 0 {
		l.ScanBudget = DefaultQueryLimits.ScanBudget
	}
	return l
}

// convQuery implements conv/query (spec 3.8). Its cost is bounded: at most
// QueryLimits.Concurrent run per app, each examines at most ScanBudget
// records and stops at the request's deadline, and the answer is cut to
// MaxQueryResultBytes.
func (e *Engine) convQuery(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	lim := e.queryLimits(c.App)
	maxBytes := MaxQueryResultBytes
	if c.Server() {
		// The server API (master key) is trusted and answers over HTTP,
		// not in a frame: only the deadline bounds it.
		lim.ScanBudget, lim.Concurrent, maxBytes = math.MaxInt32, 0, 0
	}
	if !e.queries.Acquire(c.App, lim.Concurrent) {
		return nil, protocol.ErrConversationAPIQuota.WithDetail(
			"%d conversation queries of this app are already running on this node (the limit); retry", lim.Concurrent)
	}
	defer e.queries.Release(c.App)
	if len(cm.TempConvIds) > 0 {
		return e.tempQuery(c, cm)
	}
	filter, err := query.Parse([]byte(cm.GetWhere().GetData()))
	if err != nil {
		return nil, queryFailed(err)
	}
	spec := cm.GetSort()
	if spec == "" {
		spec = defaultQuerySort
	}
	sorter, err := query.ParseSort(spec)
	if err != nil {
		return nil, queryFailed(err)
	}
	limit := defaultQueryLimit
	if cm.Limit != nil {
		limit = min(int(cm.GetLimit()), maxQueryLimit)
	}
	if limit <= 0 {
		return queryResults(nil, 0)
	}
	budget := &scanBudget{limit: lim.ScanBudget}
	skip := max(0, int(cm.GetSkip()))
	var docs []map[string]any
	order, wide := orderOf(sorter), appWide(c, filter)
	switch {
	case order != "" && wide:
		docs, err = e.orderedDocs(ctx, c, cm.GetFlag(), filter, lim, budget, order, skip+limit)
	case wide:
		// A scan of the app: it may examine the whole budget, most of it
		// on other nodes, so fewer of them run at once.
		maxScans := scanConcurrency(lim.Concurrent)
		if !e.scans.Acquire(c.App, maxScans) {
			return nil, protocol.ErrConversationAPIQuota.WithDetail(
				"%d app-wide queries of this app that no index serves are already running on this node (the limit); retry, sort by -lm or -updatedAt, or narrow where by member or objectId", maxScans)
		}
		defer e.scans.Release(c.App)
		docs, err = e.queryDocs(ctx, c, cm.GetFlag(), filter, lim, budget)
	default:
		docs, err = e.queryDocs(ctx, c, cm.GetFlag(), filter, lim, budget)
	}
	if errors.Is(err, errScanBudget) {
		return nil, protocol.ErrConversationQueryFailed.WithDetail(
			"the query would examine more than %d conversations (the scan budget): narrow where, e.g. by member", lim.ScanBudget)
	}
	if errors.Is(err, errQueryDeadline) {
		return nil, protocol.ErrConversationQueryFailed.WithDetail("the query did not finish within the request deadline: narrow where")
	}
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(docs, sorter.Compare)
	docs = docs[min(skip, len(docs)):]
	docs = docs[:min(limit, len(docs))]
	if cm.GetFlag()&flagCompact != 0 {
		for _, d := range docs {
			delete(d, "m")
		}
	}
	return queryResults(docs, maxBytes)
}

// scanConcurrency is how many app-wide queries that no index serves (each
// may examine the whole scan budget) an app runs at once on a node: a
// quarter of its concurrent queries, at least one; zero (no limit) for no
// limit.
func scanConcurrency(concurrent int) int {
	if concurrent <= 0 {
		return 0
	}
	return max(1, concurrent/4)
}

// queryDocs returns the documents of the conversations that match filter
// and that the caller may see.
func (e *Engine) queryDocs(ctx context.Context, c Caller, flag int32, filter *query.Filter, lim QueryLimits, budget *scanBudget) ([]map[string]any, error) {
	recs, err := e.queryCandidates(ctx, c, filter, budget)
	if err != nil {
		return nil, err
	}
	now := e.nowMs()
	var docs []map[string]any
	for _, r := range recs {
		if ctx.Err() != nil {
			return nil, errQueryDeadline
		}
		d, _, err := e.queryDoc(c, flag, filter, lim, r, now)
		if err != nil {
			return nil, err
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs, nil
}

// queryDoc returns r's document for the caller, or nil when r is no result:
// a temporary or expired conversation, one the caller may not see, or one
// filter does not match. last is the last message the document shows.
func (e *Engine) queryDoc(c Caller, flag int32, filter *query.Filter, lim QueryLimits, r *convRecord, now int64) (map[string]any, *message, error) {
	if r.Kind == convTemporary || r.expired(now) {
		return nil, nil, nil
	}
	if (filter.Empty() || lim.OwnConversationsOnly) && !c.Server() && !r.isMember(c.ClientID) && !isPublic(r) {
		return nil, nil, nil
	}
	last, err := e.newestFor(c.App, r, c.ClientID)
	if err != nil {
		return nil, nil, err
	}
	d := r.doc(visibleFlag(r, c, flag), last)
	if r.Kind == convSystem {
		if err := e.sysDoc(c.App, c.ClientID, r, d); err != nil {
			return nil, nil, err
		}
	}
	if !filter.Match(d) {
		return nil, nil, nil
	}
	return d, last, nil
}

// isPublic reports whether anyone may join r and read its messages: chat
// rooms and system conversations.
func isPublic(r *convRecord) bool { return r.Kind == convTransient || r.Kind == convSystem }

// visibleFlag drops the last-message flag for a caller who may not read the
// conversation's messages: only members of a normal or temporary
// conversation (anyone for public ones, the server API for all) see message
// content, in query results as in history.
func visibleFlag(r *convRecord, c Caller, flag int32) int32 {
	if c.Server() || isPublic(r) || r.isMember(c.ClientID) {
		return flag
	}
	return flag &^ flagLastMessage
}

// queryResults encodes docs as the results of conv/query, cut to maxBytes
// (0: no cut; at least one document is kept, a record is far smaller than
// MaxQueryResultBytes).
func queryResults(docs []map[string]any, maxBytes int) (*pb.GenericCommand, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, d := range docs {
		data, err := json.Marshal(d)
		if err != nil {
			return nil, internal("encode query results", err)
		}
		if maxBytes > 0 && i > 0 && buf.Len()+len(data)+2 > maxBytes {
			break
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(data)
	}
	buf.WriteByte(']')
	return convResponse(pb.OpType_results, &pb.ConvCommand{Results: protocol.JSON(buf.String())}), nil
}

// appWide reports whether a query's candidates are all of the app's
// conversations (queryCandidates): no client, member or ids pin them.
func appWide(c Caller, f *query.Filter) bool {
	if f.Empty() {
		return c.Server()
	}
	_, ids := f.ObjectIDs()
	_, member := f.Member()
	return !ids && !member
}

// queryCandidates returns the conversations a filter can match: the
// caller's (empty filter; all of the app's for the server API), the pinned
// ids, a pinned member's, or all of the app's. Every record examined is
// charged to budget.
func (e *Engine) queryCandidates(ctx context.Context, c Caller, f *query.Filter, budget *scanBudget) ([]*convRecord, error) {
	if f.Empty() && !c.Server() {
		return e.clientConvRecords(ctx, c.App, c.ClientID, budget)
	}
	if ids, ok := f.ObjectIDs(); ok {
		var out []*convRecord
		for _, id := range sortedSet(ids) {
			if err := budget.charge(ctx); err != nil {
				return nil, err
			}
			r, err := e.loadConv(c.App, id)
			if err != nil {
				return nil, err
			}
			if r != nil {
				out = append(out, r)
			}
		}
		return out, nil
	}
	if m, ok := f.Member(); ok {
		return e.clientConvRecords(ctx, c.App, m, budget)
	}
	var out []*convRecord
	err := e.forEachConv(ctx, c.App, budget, func(r *convRecord) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func (e *Engine) clientConvRecords(ctx context.Context, app, clientID string, budget *scanBudget) ([]*convRecord, error) {
	cids, err := e.clientConvs(app, clientID)
	if err != nil {
		return nil, err
	}
	out := make([]*convRecord, 0, len(cids))
	for _, cid := range cids {
		if err := budget.charge(ctx); err != nil {
			return nil, err
		}
		r, err := e.loadConv(app, cid)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// tempQuery answers conv/query with tempConvIds: the live temporary
// conversations among them, in request order.
func (e *Engine) tempQuery(c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	now := e.nowMs()
	docs := []map[string]any{}
	for _, id := range cm.TempConvIds {
		r, err := e.loadConv(c.App, id)
		if err != nil {
			return nil, err
		}
		if r == nil || r.Kind != convTemporary || r.expired(now) {
			continue
		}
		last, err := e.newestMessage(c.App, r.ID)
		if err != nil {
			return nil, err
		}
		d := r.doc(visibleFlag(r, c, cm.GetFlag()), last)
		if cm.GetFlag()&flagCompact != 0 {
			delete(d, "m")
		}
		docs = append(docs, d)
	}
	return queryResults(docs, MaxQueryResultBytes)
}

// scatterParallelism bounds the shard scans a scatter query runs at once.
const scatterParallelism = 16

// forEachConv calls fn for every conversation record of app, in shard
// order: a scatter over all S shards (each scan goes to its shard's
// coordinator).
func (e *Engine) forEachConv(ctx context.Context, app string, budget *scanBudget, fn func(*convRecord) error) error {
	results := make([][]*convRecord, e.shards.Count())
	err := e.scatter(ctx, func(shard int) error {
		return e.scanConvs(ctx, uint16(shard), app, budget, func(r *convRecord) error {
			results[shard] = append(results[shard], r)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, recs := range results {
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanConvs calls fn for every conversation record of app in shard (at the
// shard's coordinator), charging each to budget.
func (e *Engine) scanConvs(ctx context.Context, shard uint16, app string, budget *scanBudget, fn func(*convRecord) error) error {
	return e.st.ScanPrefix(store.NewKey(shard, app, store.FamConv).Bytes(), false, func(_, v []byte) (bool, error) {
		if err := budget.charge(ctx); err != nil {
			return false, err
		}
		r, err := decodeConv(v)
		if err != nil {
			return false, internal("decode conversation", err)
		}
		return true, fn(r)
	})
}

// scatter runs fn for every shard 0..S-1, scatterParallelism shards at a
// time, and returns the error of the first shard (in shard order) that
// failed; a shard not started before ctx is done fails with
// errQueryDeadline.
func (e *Engine) scatter(ctx context.Context, fn func(shard int) error) error {
	n := e.shards.Count()
	errs := make([]error, n)
	sem := make(chan struct{}, scatterParallelism)
	var wg sync.WaitGroup
	for shard := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[shard] = errQueryDeadline
				return
			}
			errs[shard] = fn(shard)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
