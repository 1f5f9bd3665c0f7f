package migrate_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/node/importer"
	"github.com/imcluster/imcluster/test/harness"
)

// fixtureSource serves testdata/history.json and testdata/unread.json the
// way LeanCloud's v1.2 REST API pages them (the source is outside the
// imcluster; this is its recorded side): history oldest first with
// reversed=true, after the (timestamp, msgid) cursor, limit records.
func fixtureSource(t *testing.T) *httptest.Server {
	t.Helper()
	var hist map[string][]map[string]any
	var unread map[string]map[string]int
	for name, v := range map[string]any{"testdata/history.json": &hist, "testdata/unread.json": &unread} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	ts := func(r map[string]any) int64 { return int64(r["timestamp"].(float64)) }
	for _, recs := range hist {
		slices.SortFunc(recs, func(a, b map[string]any) int {
			return cmp.Or(cmp.Compare(ts(a), ts(b)), strings.Compare(a["msg-id"].(string), b["msg-id"].(string)))
		})
	}
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("reversed") != "true" {
			http.Error(w, `{"code":1,"error":"the importer pages oldest first"}`, http.StatusBadRequest)
			return
		}
		limit, _ := strconv.Atoi(q.Get("limit"))
		after, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64)
		out := []map[string]any{}
		for _, rec := range hist[r.PathValue("cid")] {
			if ts(rec) < after || ts(rec) == after && rec["msg-id"].(string) <= q.Get("msgid") {
				continue
			}
			if len(out) < limit {
				out = append(out, rec)
			}
		}
		_ = json.NewEncoder(w).Encode(out)
	}
	mux.HandleFunc("GET /1.2/rtm/conversations/{cid}/messages", page)
	mux.HandleFunc("GET /1.2/rtm/chatrooms/{cid}/messages", page)
	mux.HandleFunc("GET /1.2/rtm/clients/{client}/unread-count", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{"count": unread[r.URL.Query().Get("conv_id")][r.PathValue("client")]})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-LC-Id") != "lc-app" || r.Header.Get("X-LC-Key") != "lc-master,master" {
			http.Error(w, `{"code":401,"error":"Unauthorized."}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestImportLeanCloudExport imports a _Conversation export file (JSON
// Lines, LeanCloud's record encoding) and the history LeanCloud's REST API
// serves for it: records, message ids, senders, timestamps, content and
// unread counts arrive unchanged.
func TestImportLeanCloudExport(t *testing.T) {
	src := fixtureSource(t)
	target := harness.Start(t, 1, harness.Options{})
	dst := newAPI(t, target)
	cfg := importer.Config{Source: importer.Endpoint{URL: src.URL, AppID: "lc-app", MasterKey: "lc-master"},
		Target: dst.endpoint(), ConversationsFile: "testdata/_Conversation.jsonl", Unread: true, PageSize: 2}
	rep, err := importer.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Conversations != 4 || rep.ByType["chatroom"] != 1 || rep.ByType["system"] != 1 || rep.Imported != 12 || rep.NewConversations != 4 {
		t.Fatalf("report %+v %v", rep.Progress, rep.ByType)
	}
	var hist map[string][]map[string]any
	data, _ := os.ReadFile("testdata/history.json")
	_ = json.Unmarshal(data, &hist)
	convs := dst.conversations()
	first := convs["5eccba570d3a42c5fd4e25c3"]
	if first["name"] != "My First Conversation" || first["c"] != "BillGates" || first["uniqueId"] != "6c7b0e5afcae9aa1139a0afa25833dec" ||
		first["createdAt"] != "2020-05-26T06:42:31.482Z" || first["attr"].(map[string]any)["type"] != "private" {
		t.Fatalf("imported record %v", first)
	}
	if team := convs["5ecdf1d2e3b1a70006a1b2c4"]; team["pinned"] != true || len(team["mu"].([]any)) != 1 {
		t.Fatalf("custom column or mutes lost: %v", team)
	}
	if convs["5ece0a11e3b1a70006a1b2d9"]["tr"] != true {
		t.Fatalf("chat room imported as %v", convs["5ece0a11e3b1a70006a1b2d9"])
	}
	for cid, want := range hist {
		got := dst.history(cid)
		if len(got) != len(want) {
			t.Fatalf("%s: %d messages, want %d", cid, len(got), len(want))
		}
		slices.SortFunc(want, func(a, b map[string]any) int { return cmp.Compare(a["timestamp"].(float64), b["timestamp"].(float64)) })
		for i, w := range want {
			g := got[i]
			for _, k := range []string{"msg-id", "timestamp", "from", "data", "bin", "to", "conv-id"} {
				if g[k] != w[k] {
					t.Fatalf("%s message %d: %s = %v, want %v", cid, i, k, g[k], w[k])
				}
			}
			if w["mention-pids"] != nil && len(g["mention-pids"].([]any)) != 1 {
				t.Fatalf("%s message %d: mentions lost: %v", cid, i, g)
			}
		}
	}
	for cid, counts := range map[string]map[string]float64{"5eccba570d3a42c5fd4e25c3": {"BillGates": 1, "SteveJobs": 0}, "5ecdf1d2e3b1a70006a1b2c4": {"BillGates": 2, "SteveJobs": 3, "Linus": 0}} {
		for client, want := range counts {
			if got := dst.unread(client, cid); got != want {
				t.Fatalf("%s in %s: %v unread, want %v", client, cid, got, want)
			}
		}
	}
	// The same import again changes nothing.
	again, err := importer.Run(t.Context(), cfg)
	if err != nil || again.Imported != 0 || again.NewConversations != 0 || again.Existing != 12 {
		t.Fatalf("second import: %v %+v", err, again.Progress)
	}
}
