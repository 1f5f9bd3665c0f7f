package conversation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"

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

// convQuery implements conv/query (spec 3.8).
func (e *Engine) convQuery(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
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
		return queryResults(nil)
	}
	recs, err := e.queryCandidates(ctx, c, filter)
	if err != nil {
		return nil, err
	}
	now := e.nowMs()
	var docs []map[string]any
	for _, r := range recs {
		if r.Kind == convTemporary || r.expired(now) {
			continue
		}
		if filter.Empty() && !c.Server() && !r.isMember(c.ClientID) {
			continue
		}
		last, err := e.newestFor(c.App, r, c.ClientID)
		if err != nil {
			return nil, err
		}
		d := r.doc(cm.GetFlag(), last)
		if r.Kind == convSystem {
			if err := e.sysDoc(c.App, c.ClientID, r, d); err != nil {
				return nil, err
			}
		}
		if filter.Match(d) {
			docs = append(docs, d)
		}
	}
	slices.SortStableFunc(docs, sorter.Compare)
	skip := max(0, int(cm.GetSkip()))
	docs = docs[min(skip, len(docs)):]
	docs = docs[:min(limit, len(docs))]
	if cm.GetFlag()&flagCompact != 0 {
		for _, d := range docs {
			delete(d, "m")
		}
	}
	return queryResults(docs)
}

func queryResults(docs []map[string]any) (*pb.GenericCommand, error) {
	if docs == nil {
		docs = []map[string]any{}
	}
	data, err := json.Marshal(docs)
	if err != nil {
		return nil, internal("encode query results", err)
	}
	return convResponse(pb.OpType_results, &pb.ConvCommand{Results: protocol.JSON(string(data))}), nil
}

// queryCandidates returns the conversations a filter can match: the
// caller's (empty filter; all of the app's for the server API), the pinned
// ids, a pinned member's, or all of the app's.
func (e *Engine) queryCandidates(ctx context.Context, c Caller, f *query.Filter) ([]*convRecord, error) {
	if f.Empty() && !c.Server() {
		return e.clientConvRecords(c.App, c.ClientID)
	}
	if ids, ok := f.ObjectIDs(); ok {
		var out []*convRecord
		for _, id := range sortedSet(ids) {
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
		return e.clientConvRecords(c.App, m)
	}
	var out []*convRecord
	err := e.forEachConv(ctx, c.App, func(r *convRecord) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func (e *Engine) clientConvRecords(app, clientID string) ([]*convRecord, error) {
	cids, err := e.clientConvs(app, clientID)
	if err != nil {
		return nil, err
	}
	out := make([]*convRecord, 0, len(cids))
	for _, cid := range cids {
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
		d := r.doc(cm.GetFlag(), last)
		if cm.GetFlag()&flagCompact != 0 {
			delete(d, "m")
		}
		docs = append(docs, d)
	}
	return queryResults(docs)
}

// scatterParallelism bounds the shard scans a scatter query runs at once.
const scatterParallelism = 16

// forEachConv calls fn for every conversation record of app, in shard
// order: a scatter over all S shards (each scan goes to its shard's
// coordinator), scatterParallelism shards at a time.
func (e *Engine) forEachConv(ctx context.Context, app string, fn func(*convRecord) error) error {
	n := e.shards.Count()
	results := make([][]*convRecord, n)
	errs := make([]error, n)
	sem := make(chan struct{}, scatterParallelism)
	var wg sync.WaitGroup
	for shard := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() != nil {
				errs[shard] = ctx.Err()
				return
			}
			prefix := store.NewKey(uint16(shard), app, store.FamConv).Bytes()
			errs[shard] = e.st.ScanPrefix(prefix, false, func(_, v []byte) (bool, error) {
				r, err := decodeConv(v)
				if err != nil {
					return false, internal("decode conversation", err)
				}
				results[shard] = append(results[shard], r)
				return true, nil
			})
		})
	}
	wg.Wait()
	for shard := range n {
		if errs[shard] != nil {
			return errs[shard]
		}
		for _, r := range results[shard] {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}
