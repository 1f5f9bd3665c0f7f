package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// bigAttr returns an attr JSON object with one string column of n bytes.
func bigAttr(key string, n int) string {
	return `{"` + key + `":"` + strings.Repeat("x", n) + `"}`
}

// TestConversationAbuseAttributeLimits: custom attributes are refused
// (4306, naming the limit) before anything is written once they would
// exceed MaxAttributesSize, at start and by accumulating updates; the
// record keeps its old attributes.
func TestConversationAbuseAttributeLimits(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.fail(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, Attr: protocol.JSON(bigAttr("a", MaxAttributesSize))}),
		protocol.ErrConversationUpdateFailed)
	cid := h.start(tom, "Jerry")
	chunk := MaxAttributesSize / 3
	for i := range 2 {
		h.do(tom, convReq(pb.OpType_update, &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(bigAttr(fmt.Sprint("k", i), chunk))}))
	}
	_, err := h.e.Handle(context.Background(), tom, convReq(pb.OpType_update, &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(bigAttr("k2", chunk))}))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.ErrConversationUpdateFailed.Code || !strings.Contains(pe.Detail, fmt.Sprint(MaxAttributesSize)) {
		t.Fatalf("third update: %v, want 4306 naming the %d-byte limit", err, MaxAttributesSize)
	}
	r, err := h.e.loadConv(testApp, cid)
	if err != nil || r.Columns["k2"] != nil || r.Columns["k1"] == nil {
		t.Fatalf("record after the refused update: %v %v", r.Columns, err)
	}
}

// TestConversationAbuseMentionsCountInMessageLimit: mentioned ids count in
// the 5 KB message limit, for sends and edits.
func TestConversationAbuseMentionsCountInMessageLimit(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	ids := make([]string, 3500)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%d", i)
	}
	req := directReq(cid, "hi")
	req.DirectMessage.MentionPids = ids
	h.fail(tom, req, protocol.ErrFrameTooLong)
	mid, _ := h.send(tom, cid, "hi")
	h.fail(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Data: proto.String("hi"), MentionPids: ids}), protocol.ErrFrameTooLong)
	h.fail(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Data: proto.String(strings.Repeat("x", 6000))}), protocol.ErrFrameTooLong)
}

// TestConversationAbuseHistoryPageCut: a page of 100 messages at the
// content limit is cut to MaxLogsPageBytes, keeping the newest messages
// (the ones next to the page's start), so it fits a frame.
func TestConversationAbuseHistoryPageCut(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	var last string
	for i := range 100 {
		h.clock.Advance(time.Millisecond)
		last, _ = h.send(tom, cid, fmt.Sprintf("%04d", i)+strings.Repeat("x", protocol.MaxContentSize-4))
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), Limit: proto.Int32(100)})).GetLogsMessage().GetLogs()
	size := 0
	for _, l := range logs {
		size += len(l.GetData())
	}
	if len(logs) == 0 || len(logs) == 100 || size > MaxLogsPageBytes {
		t.Fatalf("page of %d messages, %d bytes; want it cut below %d bytes", len(logs), size, MaxLogsPageBytes)
	}
	if logs[len(logs)-1].GetMsgId() != last {
		t.Fatal("the cut page does not end with the newest message")
	}
}

// TestConversationAbuseQueryResultCut: a default query over conversations
// carrying the maximum attributes is cut to MaxQueryResultBytes.
func TestConversationAbuseQueryResultCut(t *testing.T) {
	h := newHarness(t)
	mallory, victim := h.caller("Mallory", 1), h.caller("Victim", 2)
	for range 12 {
		h.do(mallory, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Victim"}, Unique: proto.Bool(false),
			Attr: protocol.JSON(bigAttr("blob", MaxAttributesSize-100))}))
	}
	resp := h.do(victim, queryReq(`{}`, "", proto.Int32(12), nil, 0))
	data := resp.GetConvMessage().GetResults().GetData()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(data), &docs); err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxQueryResultBytes || len(docs) == 0 || len(docs) == 12 {
		t.Fatalf("%d results in %d bytes; want them cut below %d bytes", len(docs), len(data), MaxQueryResultBytes)
	}
}

// TestConversationAbuseQueryVisibility: a non-member finds a conversation
// by id but never its last message; with OwnConversationsOnly not even the
// conversation, while chat rooms stay findable.
func TestConversationAbuseQueryVisibility(t *testing.T) {
	h := newHarness(t)
	tom, eve := h.caller("Tom", 1), h.caller("Eve", 2)
	cid := h.start(tom, "Jerry")
	h.send(tom, cid, "secret")
	room := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{Transient: proto.Bool(true)})).GetConvMessage().GetCid()
	byID := func(id string) *pb.GenericCommand {
		return queryReq(`{"objectId":"`+id+`"}`, "", nil, nil, flagLastMessage)
	}
	if docs := h.query(tom, byID(cid)); len(docs) != 1 || docs[0]["msg"] != "secret" {
		t.Fatalf("member's query: %v", docs)
	}
	docs := h.query(eve, byID(cid))
	if len(docs) != 1 {
		t.Fatalf("non-member's query by id: %v", docs)
	}
	if _, ok := docs[0]["msg"]; ok {
		t.Fatalf("a non-member sees the last message: %v", docs[0])
	}
	h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{OwnConversationsOnly: true} }
	if docs := h.query(eve, byID(cid)); len(docs) != 0 {
		t.Fatalf("OwnConversationsOnly: a non-member finds %v", docs)
	}
	if docs := h.query(eve, byID(room)); len(docs) != 1 {
		t.Fatalf("OwnConversationsOnly: the chat room is not found: %v", docs)
	}
}

// TestConversationAbuseQueryBudgets: an app-wide query over more records
// than the scan budget (50 here, 80 conversations) is answered 4310 naming
// the budget; a query past its deadline is answered 4310; a query beyond
// the app's concurrency limit is answered 4318.
func TestConversationAbuseQueryBudgets(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	for i := range 80 {
		h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{fmt.Sprint("m", i)}, Unique: proto.Bool(false), Attr: protocol.JSON(`{"level":1}`)}))
	}
	h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{ScanBudget: 50, Concurrent: 1} }
	appWide := queryReq(`{"level":1}`, "", nil, nil, 0)
	_, err := h.e.Handle(context.Background(), tom, appWide)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.ErrConversationQueryFailed.Code || !strings.Contains(pe.Detail, "50") {
		t.Fatalf("app-wide query over budget: %v, want 4310 naming the budget of 50", err)
	}
	if docs := h.query(tom, queryReq(`{"level":1,"m":"m7"}`, "", nil, nil, 0)); len(docs) != 1 {
		t.Fatalf("a query narrowed by member: %v", docs)
	}
	h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{ScanBudget: 1000, Concurrent: 1} }
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = h.e.Handle(ctx, tom, appWide)
	if !errors.As(err, &pe) || pe.Code != protocol.ErrConversationQueryFailed.Code || !strings.Contains(pe.Detail, "deadline") {
		t.Fatalf("query past its deadline: %v, want 4310 naming the deadline", err)
	}
	if !h.e.queries.Acquire(testApp, 1) { // a query of the app in flight
		t.Fatal("acquire")
	}
	h.fail(tom, appWide, protocol.ErrConversationAPIQuota)
	h.e.queries.Release(testApp)
	if docs := h.query(tom, appWide); len(docs) != 10 {
		t.Fatalf("app-wide query within the budget: %d results", len(docs))
	}

	// Unindexed app-wide queries (a scan) run at most a quarter of
	// Concurrent at once (2 of 8 here); indexed ones and those narrowed by
	// member still run while two scans do.
	h.e.cfg.QueryLimits = func(string) QueryLimits { return QueryLimits{ScanBudget: 1000, Concurrent: 8} }
	scan := queryReq(`{"level":1}`, "name", nil, nil, 0)
	if docs := h.query(tom, scan); len(docs) != 10 {
		t.Fatalf("a scan alone: %d results", len(docs))
	}
	for range 2 { // two scans of the app in flight
		if !h.e.scans.Acquire(testApp, 2) {
			t.Fatal("acquire")
		}
	}
	h.fail(tom, scan, protocol.ErrConversationAPIQuota)
	if docs := h.query(tom, appWide); len(docs) != 10 {
		t.Fatalf("an indexed query while two scans run: %d results", len(docs))
	}
	if docs := h.query(tom, queryReq(`{"level":1,"m":"m7"}`, "name", nil, nil, 0)); len(docs) != 1 {
		t.Fatalf("a query narrowed by member while two scans run: %v", docs)
	}
	h.e.scans.Release(testApp)
	if docs := h.query(tom, scan); len(docs) != 10 {
		t.Fatalf("a scan after one of two ended: %d results", len(docs))
	}
}
