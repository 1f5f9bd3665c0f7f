package conversation

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func queryReq(where, sort string, limit, skip *int32, flag int32) *pb.GenericCommand {
	cm := &pb.ConvCommand{Where: protocol.JSON(where), Limit: limit, Skip: skip, Flag: proto.Int32(flag)}
	if sort != "" {
		cm.Sort = proto.String(sort)
	}
	return convReq(pb.OpType_query, cm)
}

func (h *harness) query(c Caller, req *pb.GenericCommand) []map[string]any {
	h.t.Helper()
	return decodeResults(h.t, h.do(c, req))
}

// decodeResults returns the documents of a conv/query answer.
func decodeResults(t testing.TB, resp *pb.GenericCommand) []map[string]any {
	t.Helper()
	if resp.GetOp() != pb.OpType_results {
		t.Fatalf("query op %v", resp.GetOp())
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(resp.GetConvMessage().GetResults().GetData()), &out); err != nil {
		t.Fatalf("results %q: %v", resp.GetConvMessage().GetResults().GetData(), err)
	}
	return out
}

func ids(docs []map[string]any) []string {
	out := []string{}
	for _, d := range docs {
		out = append(out, d["objectId"].(string))
	}
	return out
}

func TestConversationQuery(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	eve := h.caller("Eve", 3)
	mk := func(c Caller, attr string, members ...string) string {
		h.clock.Advance(time.Second)
		resp := h.do(c, convReq(pb.OpType_start, &pb.ConvCommand{M: members, Unique: proto.Bool(false), Attr: protocol.JSON(attr)}))
		return resp.GetConvMessage().GetCid()
	}
	a := mk(tom, `{"name":"Alpha","attr":{"type":"private"},"level":1}`, "Jerry")
	b := mk(tom, `{"name":"beta","attr":{"type":"public"},"level":2}`, "Jerry", "Mary")
	c := mk(jerry, `{"name":"Gamma","level":3}`, "Mary")
	tmp := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, TempConv: proto.Bool(true), TempConvTTL: proto.Int32(60)})).GetConvMessage().GetCid()
	h.clock.Advance(time.Second)
	h.send(tom, a, `{"_lctype":-1,"_lctext":"last in a"}`)
	one := proto.Int32(1)
	zero := proto.Int32(0)

	tests := []struct {
		name   string
		caller Caller
		req    *pb.GenericCommand
		want   []string
	}{
		{"default where = mine, sorted -lm", tom, queryReq(`{}`, "", nil, nil, 0), []string{a, b}},
		{"absent where", jerry, convReq(pb.OpType_query, &pb.ConvCommand{}), []string{a, b, c}},
		{"by id for a non-member", eve, queryReq(`{"objectId":"`+c+`"}`, "", nil, nil, 0), []string{c}},
		{"$in ids", eve, queryReq(`{"objectId":{"$in":["`+a+`","`+c+`","nope"]}}`, "createdAt", nil, nil, 0), []string{a, c}},
		{"temporary never matched by where", tom, queryReq(`{"objectId":"`+tmp+`"}`, "", nil, nil, 0), []string{}},
		{"case-sensitive regex", eve, queryReq(`{"name":{"$regex":"^alpha"}}`, "", nil, nil, 0), []string{}},
		{"regex with i", eve, queryReq(`{"name":{"$regex":"^alpha","$options":"i"}}`, "", nil, nil, 0), []string{a}},
		{"dot path", eve, queryReq(`{"attr.type":"public"}`, "", nil, nil, 0), []string{b}},
		{"member scan", eve, queryReq(`{"m":"Mary"}`, "-createdAt", nil, nil, 0), []string{c, b}},
		{"sort ascending createdAt", eve, queryReq(`{"level":{"$gte":1}}`, "createdAt", nil, nil, 0), []string{a, b, c}},
		{"sort descending createdAt", eve, queryReq(`{"level":{"$gte":1}}`, "-createdAt", nil, nil, 0), []string{c, b, a}},
		{"multi-key sort", eve, queryReq(`{"level":{"$gt":0}}`, "-tr,level", nil, nil, 0), []string{a, b, c}},
		{"limit", eve, queryReq(`{"level":{"$gt":0}}`, "level", one, nil, 0), []string{a}},
		{"limit 0", tom, queryReq(`{}`, "", zero, nil, 0), []string{}},
		{"skip past the only match", eve, queryReq(`{"objectId":"`+a+`"}`, "", nil, one, 0), []string{}},
		{"exists fakeKey", eve, queryReq(`{"fakeKey":{"$exists":true}}`, "", nil, nil, 0), []string{}},
		{"doesNotExist createdAt", eve, queryReq(`{"createdAt":{"$exists":false}}`, "", nil, nil, 0), []string{}},
		{"createdAt window", eve, queryReq(`{"createdAt":{"$gt":{"__type":"Date","iso":"1970-01-01T00:00:00.000Z"},"$lt":{"__type":"Date","iso":"2099-01-01T00:00:00.000Z"}},"level":3}`, "", nil, nil, 0), []string{c}},
		{"$and with a missing id", eve, queryReq(`{"$and":[{"objectId":"`+a+`"},{"objectId":"nope"}]}`, "", nil, nil, 0), []string{}},
		{"$or", eve, queryReq(`{"$or":[{"objectId":"`+a+`"},{"objectId":"nope"}]}`, "", nil, nil, 0), []string{a}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(h.query(tc.caller, tc.req)); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// Last-message fields go to members only (TestConversationAbuseQueryVisibility).
	docs := h.query(tom, queryReq(`{"objectId":"`+a+`"}`, "", nil, nil, 2))
	d := docs[0]
	if d["name"] != "Alpha" || d["c"] != "Tom" || d["tr"] != false || d["createdAt"] == nil || d["updatedAt"] == nil {
		t.Fatalf("doc %v", d)
	}
	if _, ok := d["ttl"]; ok {
		t.Fatalf("ttl on a normal conversation: %v", d)
	}
	if lm, ok := d["lm"].(map[string]any); !ok || lm["__type"] != "Date" {
		t.Fatalf("lm %v", d["lm"])
	}
	if d["msg"] != `{"_lctype":-1,"_lctext":"last in a"}` || d["msg_from"] != "Tom" || d["msg_mid"] == nil || d["msg_timestamp"] == nil {
		t.Fatalf("last message fields %v", d)
	}
	if m, ok := d["m"].([]any); !ok || len(m) != 2 {
		t.Fatalf("m %v", d["m"])
	}
	compact := h.query(eve, queryReq(`{"objectId":"`+a+`"}`, "", nil, nil, 1))[0]
	if _, ok := compact["m"]; ok {
		t.Fatalf("compact result has m")
	}
	if _, ok := compact["msg"]; ok {
		t.Fatalf("last message without flag 2")
	}

	temps := h.query(jerry, convReq(pb.OpType_query, &pb.ConvCommand{TempConvIds: []string{tmp, "_tmp:nope"}}))
	if len(temps) != 1 || temps[0]["objectId"] != tmp || temps[0]["ttl"] != 60.0 || temps[0]["createdAt"] == nil {
		t.Fatalf("tempConvIds %v", temps)
	}
	if m, _ := temps[0]["m"].([]any); len(m) != 2 {
		t.Fatalf("temporary members %v", temps[0]["m"])
	}

	for _, bad := range []string{`[1]`, `{"a":{"$near":[1,2]}}`, `{"a":{"$regex":"(?=x)"}}`, `not json`} {
		h.fail(eve, queryReq(bad, "", nil, nil, 0), protocol.ErrConversationQueryFailed)
	}
	h.fail(eve, queryReq(`{}`, "a,,b", nil, nil, 0), protocol.ErrConversationQueryFailed)
}
