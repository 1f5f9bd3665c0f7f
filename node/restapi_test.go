package node_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// ids returns the values of key in records.
func ids(records []map[string]any, key string) []string {
	var out []string
	for _, r := range records {
		out = append(out, fmt.Sprint(r[key]))
	}
	return out
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestServerAPIParity drives LeanCloud's v1.2 server API on a three-node
// cluster (each call to another node than the one before), under both
// prefixes, with the master key and no member named.
func TestServerAPIParity(t *testing.T) {
	nodes := startCluster(t, 3)
	dev := apps.Dev()
	h := master(dev)
	at := func(i int) *node.Node { return nodes[i%len(nodes)] }

	// Conversations made by clients and by the back end, with and without
	// a creator: the master key lists them all without where.
	c := dialRaw(t, at(0), protocol.SubprotocolBinary)
	login(t, c, 1, "Tom", nil)
	wsConv := startConv(t, c, 2, "Jerry")
	code, created := call(t, at(1), "POST", "/1.2/rtm/conversations", h, `{"name":"ops","m":["Tom","Jerry","Spike"],"topic":"deploys"}`)
	if code != 201 || created["objectId"] == nil || created["name"] != "ops" || created["topic"] != "deploys" || created["c"] != "" {
		t.Fatalf("create without a creator = %d %v", code, created)
	}
	opsConv := created["objectId"].(string)
	code, created = call(t, at(2), "POST", "/1.1/rtm/conversations", h, `{"c":"Spike","m":["Tyke"],"name":"family"}`)
	if code != 201 || created["c"] != "Spike" || !slices.Equal(anyStrings(created["m"]), []string{"Spike", "Tyke"}) {
		t.Fatalf("create with a creator = %d %v", code, created)
	}
	famConv := created["objectId"].(string)
	for i, prefix := range []string{"/1.2", "/1.1"} {
		code, all := call(t, at(i), "GET", prefix+"/rtm/conversations", h, "")
		results, _ := all["results"].([]any)
		var got []string
		for _, r := range results {
			got = append(got, r.(map[string]any)["objectId"].(string))
		}
		slices.Sort(got)
		want := []string{wsConv, opsConv, famConv}
		slices.Sort(want)
		if code != 200 || !slices.Equal(got, want) {
			t.Fatalf("%s list without where = %d %v, want %v", prefix, code, got, want)
		}
	}
	where := url.QueryEscape(`{"topic":"deploys"}`)
	if code, got := call(t, at(1), "GET", "/1.2/rtm/conversations?where="+where, h, ""); code != 200 || len(got["results"].([]any)) != 1 {
		t.Fatalf("query by a custom column = %d %v", code, got)
	}
	if code, got := call(t, at(1), "GET", "/1.2/rtm/conversations?limit=2&skip=1", h, ""); code != 200 || len(got["results"].([]any)) != 2 {
		t.Fatalf("limit/skip = %d %v", code, got)
	}

	// Members: {"client_ids": [...]} in, {"result": [...]} out.
	if code, got := call(t, at(0), "POST", "/1.2/rtm/conversations/"+wsConv+"/members", h, `{"client_ids":["Spike","Tyke"]}`); code != 200 || got["objectId"] != wsConv || got["updatedAt"] == "" {
		t.Fatalf("add members = %d %v", code, got)
	}
	if code, got := call(t, at(1), "DELETE", "/1.2/rtm/conversations/"+wsConv+"/members", h, `{"client_ids":["Tyke"]}`); code != 200 {
		t.Fatalf("remove members = %d %v", code, got)
	}
	if code, got := call(t, at(2), "GET", "/1.1/rtm/conversations/"+wsConv+"/members", h, ""); code != 200 || !slices.Equal(anyStrings(got["result"]), []string{"Jerry", "Spike", "Tom"}) {
		t.Fatalf("members = %d %v", code, got)
	}

	// Sends as any client, history without naming a member.
	var sent []map[string]any
	for i := range 5 {
		code, got := call(t, at(i), "POST", "/1.2/rtm/conversations/"+opsConv+"/messages", h, fmt.Sprintf(`{"from_client":"Tom","message":"m%d"}`, i))
		if code != 200 || got["msg-id"] == nil || got["timestamp"] == nil {
			t.Fatalf("send %d = %d %v", i, code, got)
		}
		sent = append(sent, got)
	}
	code, hist := callList(t, at(1), "GET", "/1.2/rtm/conversations/"+opsConv+"/messages", h, "")
	if code != 200 || !slices.Equal(ids(hist, "data"), []string{"m4", "m3", "m2", "m1", "m0"}) ||
		hist[0]["conv-id"] != opsConv+"00000000" || hist[0]["to"] != opsConv || hist[0]["from"] != "Tom" || hist[0]["bin"] != false {
		t.Fatalf("history newest first = %d %v", code, hist)
	}
	mid := func(i int) string { return fmt.Sprint(sent[i]["msg-id"]) }
	ts := func(i int) string { return fmt.Sprintf("%.0f", sent[i]["timestamp"]) }
	page := func(query string) []string {
		t.Helper()
		code, hist := callList(t, at(2), "GET", "/1.1/rtm/conversations/"+opsConv+"/messages?"+query, h, "")
		if code != 200 {
			t.Fatalf("history %s = %d", query, code)
		}
		return ids(hist, "data")
	}
	// LeanCloud's truth table: start and end exclusive unless included.
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"timestamp=" + ts(3) + "&msgid=" + mid(3) + "&till_timestamp=" + ts(1) + "&till_msgid=" + mid(1), []string{"m2"}},
		{"timestamp=" + ts(3) + "&msgid=" + mid(3) + "&till_timestamp=" + ts(1) + "&till_msgid=" + mid(1) + "&include_start=true", []string{"m3", "m2"}},
		{"timestamp=" + ts(3) + "&msgid=" + mid(3) + "&till_timestamp=" + ts(1) + "&till_msgid=" + mid(1) + "&include_stop=true", []string{"m2", "m1"}},
		{"reversed=true&timestamp=" + ts(1) + "&msgid=" + mid(1) + "&till_timestamp=" + ts(3) + "&till_msgid=" + mid(3), []string{"m2"}},
		{"reversed=true&limit=2", []string{"m0", "m1"}},
		{"reversed=true&limit=2&timestamp=" + ts(1) + "&msgid=" + mid(1), []string{"m2", "m3"}},
		{"limit=2&timestamp=" + ts(3) + "&msgid=" + mid(3), []string{"m2", "m1"}},
	} {
		if got := page(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("history %s = %v, want %v", tc.query, got, tc.want)
		}
	}
	if code, body := call(t, at(0), "GET", "/1.2/rtm/conversations/"+opsConv+"/messages?limit=1001", h, ""); code != 400 || body["code"] != float64(107) {
		t.Fatalf("limit 1001 = %d %v", code, body)
	}
	// v1.1's history by convid (LeanCloud's 32-hex conv-id).
	if code, hist := callList(t, at(0), "GET", "/1.1/rtm/messages/history?convid="+opsConv+"00000000&limit=2", h, ""); code != 200 || !slices.Equal(ids(hist, "data"), []string{"m4", "m3"}) {
		t.Fatalf("v1.1 history = %d %v", code, hist)
	}

	// Deleting a message removes the server's copy only.
	if code, body := call(t, at(1), "DELETE", "/1.2/rtm/conversations/"+opsConv+"/messages/"+mid(2)+"?timestamp="+ts(2)+"&from_client=Tom", h, ""); code != 200 {
		t.Fatalf("delete message = %d %v", code, body)
	}
	if got := page("limit=10"); !slices.Equal(got, []string{"m4", "m3", "m1", "m0"}) {
		t.Fatalf("history after delete = %v", got)
	}
	if code, body := call(t, at(2), "DELETE", "/1.2/rtm/conversations/"+opsConv+"/messages/"+mid(2)+"?timestamp="+ts(2), h, ""); code != 404 || body["code"] != float64(4404) {
		t.Fatalf("deleting it again = %d %v, want 404/4404", code, body)
	}

	// Unread: Jerry has read nothing of ops, Tom sent everything.
	if code, got := call(t, at(0), "GET", "/1.2/rtm/clients/Jerry/unread-count?conv_id="+opsConv, h, ""); code != 200 || got["count"] != float64(4) {
		t.Fatalf("Jerry's unread = %d %v", code, got)
	}
	if code, got := call(t, at(0), "GET", "/1.1/rtm/messages/unread/Tom/"+opsConv, h, ""); code != 200 || got["count"] != float64(0) {
		t.Fatalf("Tom's unread = %d %v", code, got)
	}
	// Without conv_id: the sum over Jerry's conversations (ops and the
	// WebSocket one, where Tom sent nothing yet).
	if code, got := call(t, at(2), "GET", "/1.2/rtm/clients/Jerry/unread-count", h, ""); code != 200 || got["count"] != float64(4) {
		t.Fatalf("Jerry's total unread = %d %v", code, got)
	}

	// Mutes edit mu.
	if code, got := call(t, at(1), "POST", "/1.2/rtm/conversations/"+opsConv+"/mutes", h, `{"client_ids":["Jerry","Spike"]}`); code != 200 || got["objectId"] != opsConv {
		t.Fatalf("mute = %d %v", code, got)
	}
	call(t, at(2), "DELETE", "/1.2/rtm/conversations/"+opsConv+"/mutes", h, `{"client_ids":["Spike"]}`)
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/"+opsConv+"/mutes", h, ""); code != 200 || !slices.Equal(anyStrings(got["result"]), []string{"Jerry"}) {
		t.Fatalf("mutes = %d %v", code, got)
	}

	// Silencing: the silenced member's sends fail with 4563 until lifted.
	if code, got := call(t, at(0), "POST", "/1.2/rtm/conversations/"+opsConv+"/permanent-silenceds", h, `{"client_ids":["Spike"]}`); code != 200 || len(got) != 0 {
		t.Fatalf("silence = %d %v", code, got)
	}
	if code, got := call(t, at(1), "GET", "/1.2/rtm/conversations/"+opsConv+"/permanent-silenceds", h, ""); code != 200 || !slices.Equal(anyStrings(got["client_ids"]), []string{"Spike"}) {
		t.Fatalf("silenced list = %d %v", code, got)
	}
	if code, got := call(t, at(2), "POST", "/1.2/rtm/conversations/"+opsConv+"/messages", h, `{"from_client":"Spike","message":"hi"}`); code != 400 || got["code"] != float64(4563) {
		t.Fatalf("silenced send = %d %v, want 4563", code, got)
	}
	call(t, at(0), "DELETE", "/1.2/rtm/conversations/"+opsConv+"/permanent-silenceds", h, `{"client_ids":["Spike"]}`)
	if code, got := call(t, at(2), "POST", "/1.2/rtm/conversations/"+opsConv+"/messages", h, `{"from_client":"Spike","message":"hi"}`); code != 200 {
		t.Fatalf("send after unsilencing = %d %v", code, got)
	}

	// Temporary silence: 4315 until lifted (or the ttl passes); v1.1 names
	// it conversation/blacklist.
	if code, got := call(t, at(1), "POST", "/1.2/rtm/conversations/"+opsConv+"/temporary-silenceds", h, `{"client_id":"Jerry","ttl":600}`); code != 200 || len(got) != 0 {
		t.Fatalf("temporary silence = %d %v", code, got)
	}
	if code, got := call(t, at(2), "POST", "/1.2/rtm/conversations/"+opsConv+"/messages", h, `{"from_client":"Jerry","message":"hi"}`); code != 400 || got["code"] != float64(4315) {
		t.Fatalf("temporarily silenced send = %d %v, want 4315", code, got)
	}
	if code, got := call(t, at(0), "DELETE", "/1.1/rtm/conversation/blacklist?conv_id="+opsConv+"&client_id=Jerry", h, ""); code != 200 {
		t.Fatalf("lift the temporary silence = %d %v", code, got)
	}
	if code, got := call(t, at(2), "POST", "/1.2/rtm/conversations/"+opsConv+"/messages", h, `{"from_client":"Jerry","message":"hi"}`); code != 200 {
		t.Fatalf("send after the temporary silence = %d %v", code, got)
	}
	if code, got := call(t, at(1), "POST", "/1.2/rtm/conversations/"+opsConv+"/temporary-silenceds", h, `{"client_id":"Jerry","ttl":86401}`); code != 400 || got["code"] != float64(107) {
		t.Fatalf("ttl above a day = %d %v", code, got)
	}

	// Blacklist: the member is removed and cannot be added back (4548).
	if code, got := call(t, at(1), "POST", "/1.2/rtm/conversations/"+opsConv+"/blacklists", h, `{"client_ids":["Spike"]}`); code != 200 {
		t.Fatalf("blacklist = %d %v", code, got)
	}
	code, got := call(t, at(2), "POST", "/1.2/rtm/conversations/"+opsConv+"/members", h, `{"client_ids":["Spike"]}`)
	if failed, _ := got["failed"].([]any); code != 200 || len(failed) != 1 || failed[0].(map[string]any)["code"] != float64(4548) {
		t.Fatalf("re-adding a blacklisted client = %d %v, want failed 4548", code, got)
	}
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/"+opsConv+"/blacklists", h, ""); code != 200 || !slices.Equal(anyStrings(got["client_ids"]), []string{"Spike"}) {
		t.Fatalf("blacklist list = %d %v", code, got)
	}
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/"+opsConv+"/members", h, ""); code != 200 || slices.Contains(anyStrings(got["result"]), "Spike") {
		t.Fatalf("members after blacklisting = %d %v", code, got)
	}

	// Roles through _ConversationMemberInfo rows.
	code, got = call(t, at(1), "POST", "/1.2/rtm/conversations/"+wsConv+"/member-infos", h, `{"clientId":"Jerry","role":"Manager"}`)
	if code != 200 || got["objectId"] != wsConv+":Jerry" {
		t.Fatalf("set role = %d %v", code, got)
	}
	code, got = call(t, at(2), "GET", "/1.2/rtm/conversations/"+wsConv+"/member-infos", h, "")
	if rows, _ := got["results"].([]any); code != 200 || len(rows) != 1 || rows[0].(map[string]any)["role"] != "Manager" {
		t.Fatalf("roles = %d %v", code, got)
	}
	if code, got := call(t, at(0), "POST", "/1.2/rtm/conversations/"+wsConv+"/member-infos", h, `{"clientId":"Jerry","role":"King"}`); code != 400 || got["code"] != float64(4321) {
		t.Fatalf("unknown role = %d %v, want 4321", code, got)
	}
	call(t, at(0), "DELETE", "/1.2/rtm/conversations/"+wsConv+"/member-infos/"+wsConv+":Jerry", h, "")
	code, got = call(t, at(1), "GET", "/1.2/rtm/conversations/"+wsConv+"/member-infos?role=Manager", h, "")
	if rows, _ := got["results"].([]any); code != 200 || len(rows) != 0 {
		t.Fatalf("managers after reset = %d %v", code, got)
	}

	// Update: columns straight in the body.
	if code, got := call(t, at(2), "PUT", "/1.2/rtm/conversations/"+opsConv, h, `{"name":"operations"}`); code != 200 || got["objectId"] != opsConv || got["updatedAt"] == "" {
		t.Fatalf("update = %d %v", code, got)
	}
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/"+opsConv, h, ""); code != 200 || got["results"].([]any)[0].(map[string]any)["name"] != "operations" {
		t.Fatalf("after update = %d %v", code, got)
	}

	// Deleting a conversation: gone from queries, history and its members'
	// lists.
	if code, got := call(t, at(1), "DELETE", "/1.2/rtm/conversations/"+famConv, h, ""); code != 200 || len(got) != 0 {
		t.Fatalf("delete conversation = %d %v", code, got)
	}
	if code, got := call(t, at(2), "GET", "/1.2/rtm/conversations/"+famConv, h, ""); code != 200 || len(got["results"].([]any)) != 0 {
		t.Fatalf("deleted conversation still found: %d %v", code, got)
	}
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/"+famConv+"/messages", h, ""); code != 404 || got["code"] != float64(4303) {
		t.Fatalf("history of a deleted conversation = %d %v", code, got)
	}
	code, got = call(t, at(0), "GET", "/1.2/rtm/conversations?where="+url.QueryEscape(`{"m":"Tyke"}`), h, "")
	if code != 200 || len(got["results"].([]any)) != 0 {
		t.Fatalf("a deleted conversation's member still finds it: %d %v", code, got)
	}
	if code, got := call(t, at(2), "DELETE", "/1.2/rtm/conversations/"+famConv, h, ""); code != 404 || got["code"] != float64(4303) {
		t.Fatalf("deleting it again = %d %v", code, got)
	}

	// Online status and kick (Tom is connected to node 0; ask the others).
	code, got = call(t, at(1), "POST", "/1.2/rtm/clients/check-online", h, `{"client_ids":["Tom","Jerry"]}`)
	if code != 200 || !slices.Equal(anyStrings(got["results"]), []string{"Tom"}) {
		t.Fatalf("check-online = %d %v", code, got)
	}
	if code, got := call(t, at(2), "POST", "/1.1/rtm/online", h, `{"peers":["Jerry"]}`); code != 200 || len(anyStrings(got["results"])) != 0 {
		t.Fatalf("v1.1 online = %d %v", code, got)
	}
	if code, got := call(t, at(2), "POST", "/1.2/rtm/clients/Tom/kick", h, `{"reason":"maintenance"}`); code != 200 || len(got) != 0 {
		t.Fatalf("kick = %d %v", code, got)
	}
	for {
		f := c.recv()
		if f.GetCmd() == pb.CommandType_session && f.GetOp() == pb.OpType_closed {
			if f.GetSessionMessage().GetCode() != 4115 {
				t.Fatalf("kicked session got %v, want code 4115", f)
			}
			break
		}
	}

	// Bad input and the wrong key.
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/1.2/rtm/conversations/" + opsConv + "/members", `{"client_ids":[]}`},
		{"POST", "/1.2/rtm/conversations/" + opsConv + "/members", `{"client_ids":"Tom"}`},
		{"POST", "/1.2/rtm/clients/check-online", `{"client_ids":[` + strings.Repeat(`"x",`, 20) + `"y"]}`},
		{"POST", "/1.2/rtm/conversations/" + opsConv + "/messages", `{"message":"no sender"}`},
		{"GET", "/1.2/rtm/conversations?where=%5B1%5D", ""},
		{"POST", "/1.2/rtm/clients/Tom/kick", `{"reason":"` + strings.Repeat("x", 21) + `"}`},
	} {
		if code, got := call(t, at(0), tc.method, tc.path, h, tc.body); code != 400 || got["code"] == nil || got["error"] == nil {
			t.Errorf("%s %s %s = %d %v, want 400 with code and error", tc.method, tc.path, tc.body, code, got)
		}
	}
	if code, got := call(t, at(0), "GET", "/1.2/rtm/conversations/nope/messages", h, ""); code != 404 || got["code"] != float64(4303) {
		t.Fatalf("history of an unknown conversation = %d %v", code, got)
	}
	appKey := map[string]string{"X-LC-Id": dev.ID, "X-LC-Key": dev.Key}
	if code, _ := call(t, at(0), "GET", "/1.2/rtm/conversations", appKey, ""); code != 403 {
		t.Fatalf("app key on the server API = %d, want 403", code)
	}
}

// TestServerAPIImport imports LeanCloud-shaped records: ids, senders,
// timestamps and columns are kept, a second import changes nothing, and
// unread counts are set as the source reported them.
func TestServerAPIImport(t *testing.T) {
	nodes := startCluster(t, 2)
	h := master(apps.Dev())
	const cid = "5eccba570d3a42c5fd4e25c3"
	record := `[{"objectId":"` + cid + `","name":"My First Conversation","m":["BillGates","SteveJobs"],
		"c":"BillGates","mu":["SteveJobs"],"unique":true,"uniqueId":"6c7b0e5afcae9aa1139a0afa25833dec",
		"lm":{"__type":"Date","iso":"2020-05-26T06:50:00.000Z"},"attr":{"type":"private"},
		"createdAt":"2020-05-26T06:42:31.482Z","updatedAt":{"__type":"Date","iso":"2020-05-26T06:42:31.492Z"},
		"ACL":{"*":{"read":true,"write":true}}}]`
	for i, want := range []map[string]any{{"imported": float64(1), "existing": float64(0)}, {"imported": float64(0), "existing": float64(1)}} {
		if code, got := call(t, nodes[i], "POST", "/1.2/rtm/import/conversations", h, record); code != 200 || got["imported"] != want["imported"] || got["existing"] != want["existing"] {
			t.Fatalf("import conversation, run %d = %d %v, want %v", i+1, code, got, want)
		}
	}
	code, got := call(t, nodes[1], "GET", "/1.2/rtm/conversations/"+cid, h, "")
	rec := got["results"].([]any)[0].(map[string]any)
	if code != 200 || rec["name"] != "My First Conversation" || rec["c"] != "BillGates" || rec["createdAt"] != "2020-05-26T06:42:31.482Z" ||
		rec["uniqueId"] != "6c7b0e5afcae9aa1139a0afa25833dec" || rec["attr"].(map[string]any)["type"] != "private" ||
		!slices.Equal(anyStrings(rec["mu"]), []string{"SteveJobs"}) || rec["ACL"] != nil {
		t.Fatalf("imported record = %d %v", code, rec)
	}
	msgs := `{"conv_id":"` + cid + `00000000","messages":[
		{"msg-id":"vdkGm4dtRNmhQ5gqUTFBiA","timestamp":1590475800000,"from":"BillGates","data":"hello","bin":false},
		{"msg-id":"second","timestamp":1590475801000,"from":"SteveJobs","data":"{\"_lctype\":-1,\"_lctext\":\"hi\"}","mention-pids":["BillGates"]},
		{"msg-id":"third","timestamp":1590475802000,"from":"SteveJobs","data":"AAEC","bin":true}]}`
	for i, want := range []float64{3, 0} {
		if code, got := call(t, nodes[i], "POST", "/1.2/rtm/import/messages", h, msgs); code != 200 || got["imported"] != want {
			t.Fatalf("import messages, run %d = %d %v, want %v imported", i+1, code, got, want)
		}
	}
	code, hist := callList(t, nodes[0], "GET", "/1.2/rtm/conversations/"+cid+"/messages?reversed=true", h, "")
	if code != 200 || !slices.Equal(ids(hist, "msg-id"), []string{"vdkGm4dtRNmhQ5gqUTFBiA", "second", "third"}) ||
		hist[0]["timestamp"] != float64(1590475800000) || hist[1]["from"] != "SteveJobs" ||
		!slices.Equal(anyStrings(hist[1]["mention-pids"]), []string{"BillGates"}) || hist[2]["bin"] != true || hist[2]["data"] != "AAEC" {
		t.Fatalf("imported history = %d %v", code, hist)
	}
	// The source said BillGates had 1 unread message: SteveJobs' last.
	if code, got := call(t, nodes[1], "PUT", "/1.2/rtm/import/conversations/"+cid+"/unread", h, `{"unread":{"BillGates":1}}`); code != 200 {
		t.Fatalf("set unread = %d %v", code, got)
	}
	for client, want := range map[string]float64{"BillGates": 1, "SteveJobs": 0} {
		if code, got := call(t, nodes[0], "GET", "/1.2/rtm/clients/"+client+"/unread-count?conv_id="+cid, h, ""); code != 200 || got["count"] != want {
			t.Fatalf("%s's unread = %d %v, want %v", client, code, got, want)
		}
	}
	// A client logging in sees the imported conversation in its queries.
	c := dialRaw(t, nodes[1], protocol.SubprotocolBinary)
	login(t, c, 1, "SteveJobs", nil)
	code, list := call(t, nodes[0], "GET", "/1.2/rtm/conversations?where="+url.QueryEscape(`{"m":"SteveJobs"}`), h, "")
	if code != 200 || len(list["results"].([]any)) != 1 {
		t.Fatalf("member query = %d %v", code, list)
	}
	for _, bad := range []string{
		`{"conv_id":"` + cid + `","messages":[{"msg-id":"","timestamp":1,"from":"a","data":"x"}]}`,
		`{"conv_id":"` + cid + `","messages":[{"msg-id":"x","timestamp":0,"from":"a","data":"x"}]}`,
		`{"conv_id":"` + cid + `","messages":[{"msg-id":"x","timestamp":1,"from":"a","data":"%%","bin":true}]}`,
		`{"messages":[]}`,
	} {
		if code, got := call(t, nodes[0], "POST", "/1.2/rtm/import/messages", h, bad); code != 400 || got["code"] == nil {
			t.Errorf("import %s = %d %v, want 400", bad, code, got)
		}
	}
	if code, got := call(t, nodes[0], "POST", "/1.2/rtm/import/messages", h, `{"conv_id":"unknown","messages":[]}`); code != 404 || got["code"] != float64(4303) {
		t.Fatalf("import into an unknown conversation = %d %v", code, got)
	}
}
