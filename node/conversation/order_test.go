package conversation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// orderIndexConvs is the size of the app in TestConversationAbuseQueryOrderIndex
// (test/abuse runs the same bound against 20,000 over real sockets).
const orderIndexConvs = 4000

// orderIndexBudget is the scan budget that test's ordered queries (limit
// 10, half the conversations match) must fit in: the records they examine.
const orderIndexBudget = 40

// TestConversationAbuseQueryOrderIndex: over 4,000 conversations, an
// app-wide query sorted by -lm or -updatedAt with limit 10 examines at most
// 40 records (the scan budget is set to 40: one more answers 4310) and
// answers what a full scan answers. Before the sweeper built the index
// (conversations stored by a version without it: the test deletes the
// index) the same query needs the full scan and fails the budget.
func TestConversationAbuseQueryOrderIndex(t *testing.T) {
	h := newHarness(t)
	callers := make([]Caller, 20)
	for i := range callers {
		callers[i] = h.caller(fmt.Sprint("u", i), SessionID(i+1))
	}
	cids := make([]string, orderIndexConvs)
	for i := range cids {
		resp := h.do(callers[i%len(callers)], convReq(pb.OpType_start, &pb.ConvCommand{M: []string{fmt.Sprint("m", i)},
			Unique: proto.Bool(false), Attr: protocol.JSON(fmt.Sprintf(`{"level":%d}`, i%2))}))
		cids[i] = resp.GetConvMessage().GetCid()
	}
	for i := 0; i < orderIndexConvs; i += 113 { // 36 conversations get messages, some several
		h.clock.Advance(time.Millisecond)
		for range 1 + i%3 {
			h.send(callers[i%len(callers)], cids[i], "hi")
		}
	}
	h.clock.Advance(time.Millisecond)
	h.do(callers[7], updateReq(cids[7], `{"x":1}`)) // the newest updatedAt

	server := Caller{App: testApp} // no scan budget
	full := func(where, sort string, skip int32) []string {
		t.Helper()
		h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{ScanBudget: 1 << 30} }
		// Two sort keys: no index serves them, the query scans everything.
		return ids(h.query(server, queryReq(where, sort+",objectId", proto.Int32(10), proto.Int32(skip), 0)))
	}
	indexed := func(c Caller, where, sort string, skip int32) ([]string, error) {
		t.Helper()
		h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{ScanBudget: orderIndexBudget} }
		resp, err := h.e.Handle(context.Background(), c, queryReq(where, sort, proto.Int32(10), proto.Int32(skip), 0))
		if err != nil {
			return nil, err
		}
		return ids(decodeResults(t, resp)), nil
	}
	queries := []struct {
		c     Caller
		where string
		sort  string
		skip  int32
	}{
		{callers[0], `{"level":1}`, "-lm", 0},
		{callers[1], `{"level":0}`, "", 5}, // the default sort is -lm
		{callers[3], `{"level":{"$gte":0}}`, "-updatedAt", 3},
	}
	wants := make([][]string, len(queries))
	check := func(stage string, rescan bool) {
		t.Helper()
		for i, q := range queries {
			if rescan {
				wants[i] = full(q.where, cmpSort(q.sort), q.skip)
			}
			want := wants[i]
			got, err := indexed(q.c, q.where, q.sort, q.skip)
			if err != nil {
				t.Fatalf("%s: query %s sort %q skip %d over %d conversations with a scan budget of %d: %v",
					stage, q.where, q.sort, q.skip, orderIndexConvs, orderIndexBudget, err)
			}
			if !slices.Equal(got, want) || len(got) != 10 {
				t.Fatalf("%s: query %s sort %q skip %d = %v, want %v (a full scan)", stage, q.where, q.sort, q.skip, got, want)
			}
		}
	}

	// Written through this version: the index is there, but no shard's
	// marker says it covers the shard until the sweeper ran.
	if _, err := indexed(callers[0], `{"level":1}`, "-lm", 0); !isBudgetError(err) {
		t.Fatalf("ordered query before the index was built: %v, want 4310 naming the budget", err)
	}
	if err := h.e.sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after the first sweep", true)

	// Stored by a version without the index: the sweeper's build pass
	// builds it.
	for shard := range uint16(h.e.shards.Count()) {
		p := store.NewKey(shard, testApp, store.FamOrder).Bytes()
		b := h.st.NewBatch()
		b.DeleteRange(p, store.PrefixEnd(p))
		if err := h.st.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := indexed(callers[3], `{"level":{"$gte":0}}`, "-updatedAt", 0); !isBudgetError(err) {
		t.Fatalf("ordered query without the index: %v, want 4310 naming the budget", err)
	}
	if err := h.e.buildOrderIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after the index was rebuilt", false)

	// Sends and updates keep it: a new last message and a new updatedAt
	// come first at once.
	h.clock.Advance(time.Second)
	h.send(callers[5], cids[5], "late")
	h.do(callers[9], updateReq(cids[9], `{"x":2}`))
	if got, err := indexed(callers[2], `{"level":{"$gte":0}}`, "-lm", 0); err != nil || got[0] != cids[5] {
		t.Fatalf("after a send to %s: -lm query = %v, %v", cids[5], got, err)
	}
	if got, err := indexed(callers[2], `{"level":{"$gte":0}}`, "-updatedAt", 0); err != nil || got[0] != cids[9] {
		t.Fatalf("after an update of %s: -updatedAt query = %v, %v", cids[9], got, err)
	}
	check("after a send and an update", true)
}

// cmpSort is the sort a full scan uses for spec: the same order, by a spec
// of two keys.
func cmpSort(spec string) string {
	if spec == "" {
		return defaultQuerySort
	}
	return spec
}

func isBudgetError(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Code == protocol.ErrConversationQueryFailed.Code &&
		strings.Contains(pe.Detail, fmt.Sprint(orderIndexBudget))
}

// TestConversationOrderIndexStaleEntries: stale lm entries, what a replica
// that missed a send's move of the entry keeps and anti-entropy may copy
// back (the old value of a conversation, an entry of a deleted one), do
// not change what ordered queries answer, and the sweeper's tidy removes
// them.
func TestConversationOrderIndexStaleEntries(t *testing.T) {
	h := newHarness(t)
	alice := h.caller("alice", 1)
	var cids []string
	var firstTs []int64
	for i := range 12 {
		cid := h.start(alice, fmt.Sprint("m", i))
		h.clock.Advance(time.Millisecond)
		_, ts := h.send(alice, cid, "one")
		h.clock.Advance(time.Millisecond)
		h.send(alice, cid, "two")
		cids, firstTs = append(cids, cid), append(firstTs, ts)
	}
	if err := h.e.sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	server := Caller{App: testApp}
	query := func(sort string) []string {
		t.Helper()
		return ids(h.query(server, queryReq(`{}`, sort, proto.Int32(5), proto.Int32(2), 0)))
	}
	want := query("-lm,objectId") // two sort keys: a full scan
	if got := query("-lm"); !slices.Equal(got, want) || len(got) != 5 {
		t.Fatalf("-lm query = %v, want %v", got, want)
	}

	var stale [][]byte
	for i, cid := range cids {
		stale = append(stale, h.e.orderKey(testApp, cid, orderLM, firstTs[i]))
	}
	stale = append(stale, h.e.orderKey(testApp, "deleted-conversation", orderLM, h.clock.Now().UnixMilli()))
	b := h.st.NewBatch()
	for _, k := range stale {
		b.Set(k, nil)
	}
	if err := h.st.Commit(b); err != nil {
		t.Fatal(err)
	}
	if got := query("-lm"); !slices.Equal(got, want) {
		t.Fatalf("-lm query with stale entries = %v, want %v", got, want)
	}

	h.clock.Advance(orderTidyInterval)
	if err := h.e.sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, k := range stale {
		if _, err := h.st.Get(k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("stale entry %x after the tidy: %v", k, err)
		}
	}
	if got := query("-lm"); !slices.Equal(got, want) {
		t.Fatalf("-lm query after the tidy = %v, want %v", got, want)
	}
}
