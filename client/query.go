package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// ConversationQuery builds a conv/query (the SDK's ConversationQuery). The
// builder methods return the query for chaining; a query is not safe for
// concurrent mutation, but Find may be called concurrently once built.
// Values may be JSON values or time.Time (sent as LeanCloud dates).
type ConversationQuery struct {
	cl      *IMClient
	where   map[string]any
	sort    []string
	limit   *int32
	skip    *int32
	flag    int32
	tempIDs []string
}

// Query returns an empty query; with no condition it matches the
// conversations the client is a member of.
func (cl *IMClient) Query() *ConversationQuery {
	return &ConversationQuery{cl: cl, where: map[string]any{}}
}

// addOp merges operator op into key's condition (several operators on one
// key are ANDed by the server).
func (q *ConversationQuery) addOp(key, op string, v any) *ConversationQuery {
	cond, ok := q.where[key].(map[string]any)
	if !ok {
		cond = map[string]any{}
		q.where[key] = cond
	}
	cond[op] = v
	return q
}

// EqualTo: key == v (array columns: contains v).
func (q *ConversationQuery) EqualTo(key string, v any) *ConversationQuery {
	q.where[key] = v
	return q
}

// NotEqualTo: key != v.
func (q *ConversationQuery) NotEqualTo(key string, v any) *ConversationQuery {
	return q.addOp(key, "$ne", v)
}

// LessThan: key < v.
func (q *ConversationQuery) LessThan(key string, v any) *ConversationQuery {
	return q.addOp(key, "$lt", v)
}

// LessThanOrEqualTo: key <= v.
func (q *ConversationQuery) LessThanOrEqualTo(key string, v any) *ConversationQuery {
	return q.addOp(key, "$lte", v)
}

// GreaterThan: key > v.
func (q *ConversationQuery) GreaterThan(key string, v any) *ConversationQuery {
	return q.addOp(key, "$gt", v)
}

// GreaterThanOrEqualTo: key >= v.
func (q *ConversationQuery) GreaterThanOrEqualTo(key string, v any) *ConversationQuery {
	return q.addOp(key, "$gte", v)
}

// ContainedIn: key is one of values ($in).
func (q *ConversationQuery) ContainedIn(key string, values ...any) *ConversationQuery {
	return q.addOp(key, "$in", values)
}

// NotContainedIn: key is none of values ($nin).
func (q *ConversationQuery) NotContainedIn(key string, values ...any) *ConversationQuery {
	return q.addOp(key, "$nin", values)
}

// ContainsAll: array key contains all values ($all).
func (q *ConversationQuery) ContainsAll(key string, values ...any) *ConversationQuery {
	return q.addOp(key, "$all", values)
}

// SizeEqualTo: array key has n elements ($size).
func (q *ConversationQuery) SizeEqualTo(key string, n int) *ConversationQuery {
	return q.addOp(key, "$size", n)
}

// ContainsMembers: the members include all ids.
func (q *ConversationQuery) ContainsMembers(ids ...string) *ConversationQuery {
	return q.ContainsAll("m", stringsToAny(ids)...)
}

// WithMembers: the members are exactly ids (plus the client if
// includeSelf).
func (q *ConversationQuery) WithMembers(ids []string, includeSelf bool) *ConversationQuery {
	if includeSelf {
		ids = append(ids, q.cl.id)
	}
	ids = normalizeMembers(ids)
	return q.SizeEqualTo("m", len(ids)).ContainsAll("m", stringsToAny(ids)...)
}

// Exists: key is present.
func (q *ConversationQuery) Exists(key string) *ConversationQuery {
	return q.addOp(key, "$exists", true)
}

// DoesNotExist: key is absent.
func (q *ConversationQuery) DoesNotExist(key string) *ConversationQuery {
	return q.addOp(key, "$exists", false)
}

// Matches: key matches the regular expression re (RE2 syntax); options may
// hold "i" (case-insensitive) and "m" (multi-line).
func (q *ConversationQuery) Matches(key, re, options string) *ConversationQuery {
	q.addOp(key, "$regex", re)
	if options != "" {
		q.addOp(key, "$options", options)
	}
	return q
}

// Contains: string key contains s (quoted with \Q..\E like the JS SDK).
func (q *ConversationQuery) Contains(key, s string) *ConversationQuery {
	return q.Matches(key, quote(s), "")
}

// StartsWith: string key starts with s.
func (q *ConversationQuery) StartsWith(key, s string) *ConversationQuery {
	return q.Matches(key, "^"+quote(s), "")
}

// EndsWith: string key ends with s.
func (q *ConversationQuery) EndsWith(key, s string) *ConversationQuery {
	return q.Matches(key, quote(s)+"$", "")
}

// quote wraps s in \Q..\E, escaping an embedded \E the way the JS SDK does.
func quote(s string) string {
	return `\Q` + strings.ReplaceAll(s, `\E`, `\E\\E\Q`) + `\E`
}

// And returns a query matching all of qs ({"$and": [...]}); it belongs to
// the client of the first query.
func And(q *ConversationQuery, more ...*ConversationQuery) *ConversationQuery {
	return combine("$and", append([]*ConversationQuery{q}, more...))
}

// Or returns a query matching any of qs ({"$or": [...]}).
func Or(q *ConversationQuery, more ...*ConversationQuery) *ConversationQuery {
	return combine("$or", append([]*ConversationQuery{q}, more...))
}

func combine(op string, qs []*ConversationQuery) *ConversationQuery {
	parts := make([]any, 0, len(qs))
	for _, q := range qs {
		parts = append(parts, q.where)
	}
	return &ConversationQuery{cl: qs[0].cl, where: map[string]any{op: parts}}
}

// Ascending adds an ascending sort key (the SDK's addAscending).
func (q *ConversationQuery) Ascending(key string) *ConversationQuery {
	q.sort = append(q.sort, key)
	return q
}

// Descending adds a descending sort key (addDescending).
func (q *ConversationQuery) Descending(key string) *ConversationQuery {
	q.sort = append(q.sort, "-"+key)
	return q
}

// Limit sets the page size; 0 is valid and returns nothing.
func (q *ConversationQuery) Limit(n int) *ConversationQuery {
	q.limit = new(int32(n))
	return q
}

// Skip skips the first n results.
func (q *ConversationQuery) Skip(n int) *ConversationQuery {
	q.skip = new(int32(n))
	return q
}

// Compact leaves the member lists out of the results.
func (q *ConversationQuery) Compact(on bool) *ConversationQuery { return q.setFlag(1, on) }

// WithLastMessage includes each conversation's last message
// (withLastMessagesRefreshed).
func (q *ConversationQuery) WithLastMessage(on bool) *ConversationQuery { return q.setFlag(2, on) }

func (q *ConversationQuery) setFlag(bit int32, on bool) *ConversationQuery {
	if on {
		q.flag |= bit
	} else {
		q.flag &^= bit
	}
	return q
}

// TemporaryIDs turns the query into a lookup of temporary conversations by
// id (tempConvIds); other conditions are ignored.
func (q *ConversationQuery) TemporaryIDs(ids ...string) *ConversationQuery {
	q.tempIDs = append(q.tempIDs, ids...)
	return q
}

// Where returns the JSON condition the query sends.
func (q *ConversationQuery) Where() (string, error) { return marshalJSON(q.where) }

// Find runs the query and returns handles with their records.
func (q *ConversationQuery) Find(ctx context.Context) ([]*Conversation, error) {
	infos, err := q.findInfos(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Conversation, 0, len(infos))
	for _, info := range infos {
		c := q.cl.Conversation(info.ID)
		c.info = info
		out = append(out, c)
	}
	return out, nil
}

// First runs the query with limit 1; ErrNotFound if nothing matches.
func (q *ConversationQuery) First(ctx context.Context) (*Conversation, error) {
	list, err := q.Limit(1).Find(ctx)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNotFound
	}
	return list[0], nil
}

func (q *ConversationQuery) findInfos(ctx context.Context) ([]ConversationInfo, error) {
	cm := &pb.ConvCommand{Limit: q.limit, Skip: q.skip, Flag: new(q.flag)}
	if len(q.tempIDs) > 0 {
		cm = &pb.ConvCommand{TempConvIds: q.tempIDs, Limit: new(int32(len(q.tempIDs)))}
	} else {
		where, err := q.Where()
		if err != nil {
			return nil, err
		}
		cm.Where = protocol.JSON(where)
		if len(q.sort) > 0 {
			cm.Sort = new(strings.Join(q.sort, ","))
		}
	}
	resp, err := q.cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), ConvMessage: cm})
	if err != nil {
		return nil, err
	}
	var recs []map[string]any
	if data := resp.GetConvMessage().GetResults().GetData(); data != "" {
		if err := json.Unmarshal([]byte(data), &recs); err != nil {
			return nil, fmt.Errorf("%w: conv/results: %v", ErrUnexpectedResponse, err)
		}
	}
	out := make([]ConversationInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, parseConversation(r))
	}
	return out, nil
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
