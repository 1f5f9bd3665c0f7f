package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/importer"
	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// api is the server REST API of one cluster, called with the dev app's
// master key.
type api struct {
	t    testing.TB
	base string
}

func newAPI(t testing.TB, c *harness.Cluster) *api { return &api{t: t, base: c.Node(0).ServerURL()} }

func (a *api) endpoint() importer.Endpoint {
	return importer.Endpoint{URL: a.base, AppID: apps.DevAppID, MasterKey: apps.DevMasterKey}
}

// call performs a request and decodes the 2xx answer into out.
func (a *api) call(method, path string, q url.Values, in, out any) {
	a.t.Helper()
	if err := a.try(method, path, q, in, out); err != nil {
		a.t.Fatal(err)
	}
}

func (a *api) try(method, path string, q url.Values, in, out any) error {
	u := a.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-LC-Id", apps.DevAppID)
	req.Header.Set("X-LC-Key", apps.DevMasterKey+",master")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// conversations lists every conversation record, by objectId.
func (a *api) conversations() map[string]map[string]any {
	a.t.Helper()
	out := map[string]map[string]any{}
	after := ""
	for {
		where := "{}"
		if after != "" {
			where = `{"objectId":{"$gt":"` + after + `"}}`
		}
		var res struct {
			Results []map[string]any `json:"results"`
		}
		a.call("GET", "/1.2/rtm/all-conversations", url.Values{"where": {where}, "order": {"objectId"}, "limit": {"1000"}}, nil, &res)
		for _, r := range res.Results {
			after = r["objectId"].(string)
			out[after] = r
		}
		if len(res.Results) < 1000 {
			return out
		}
	}
}

// history returns every record of cid's history, oldest first.
func (a *api) history(cid string) []map[string]any {
	a.t.Helper()
	var out []map[string]any
	q := url.Values{"reversed": {"true"}, "limit": {"1000"}}
	for {
		var page []map[string]any
		a.call("GET", "/1.2/rtm/conversations/"+cid+"/messages", q, nil, &page)
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
		last := page[len(page)-1]
		q.Set("timestamp", strconv.FormatFloat(last["timestamp"].(float64), 'f', 0, 64))
		q.Set("msgid", last["msg-id"].(string))
	}
}

func (a *api) unread(client, cid string) float64 {
	a.t.Helper()
	var res struct {
		Count float64 `json:"count"`
	}
	a.call("GET", "/1.2/rtm/clients/"+url.PathEscape(client)+"/unread-count", url.Values{"conv_id": {cid}}, nil, &res)
	return res.Count
}

// verify compares every conversation, every message and every member's
// unread count of src and dst, and returns the number of messages compared.
func verify(t testing.TB, src, dst *api) int {
	t.Helper()
	want, got := src.conversations(), dst.conversations()
	if len(want) != len(got) {
		t.Fatalf("target has %d conversations, source %d", len(got), len(want))
	}
	messages := 0
	for cid, w := range want {
		g, ok := got[cid]
		if !ok {
			t.Fatalf("conversation %s is missing on the target", cid)
		}
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("conversation %s differs:\nsource %v\ntarget %v", cid, w, g)
		}
		wh, gh := src.history(cid), dst.history(cid)
		if len(wh) != len(gh) {
			t.Fatalf("conversation %s: target has %d messages, source %d", cid, len(gh), len(wh))
		}
		for i := range wh {
			delete(wh[i], "ack-at") // delivery receipts are not migrated
			if !reflect.DeepEqual(wh[i], gh[i]) {
				t.Fatalf("conversation %s message %d differs:\nsource %v\ntarget %v", cid, i, wh[i], gh[i])
			}
		}
		messages += len(wh)
		if w["tr"] == true {
			continue
		}
		for _, list := range []string{"member-infos", "permanent-silenceds", "blacklists"} {
			var sl, dl map[string]any
			src.call("GET", "/1.2/rtm/conversations/"+cid+"/"+list, url.Values{"limit": {"100"}}, nil, &sl)
			dst.call("GET", "/1.2/rtm/conversations/"+cid+"/"+list, url.Values{"limit": {"100"}}, nil, &dl)
			if !reflect.DeepEqual(sl, dl) {
				t.Fatalf("conversation %s %s: source %v, target %v", cid, list, sl, dl)
			}
		}
		members, _ := w["m"].([]any)
		for _, m := range members {
			if s, d := src.unread(m.(string), cid), dst.unread(m.(string), cid); s != d {
				t.Fatalf("conversation %s: %s has %v unread on the source, %v on the target", cid, m, s, d)
			}
		}
	}
	return messages
}

// names returns n client ids.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// fillBulk writes convs conversations of three members with msgs messages
// each into the source through its import endpoint (fast; the benchmark's
// source), timestamps one second apart and senders alternating.
func fillBulk(t testing.TB, src *api, convs, msgs int) {
	t.Helper()
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for c := range convs {
		cid := fmt.Sprintf("5eccba570d3a%012x", c)
		members := names(fmt.Sprintf("c%d-u", c), 3)
		rec := map[string]any{"objectId": cid, "name": "bulk " + strconv.Itoa(c), "m": members, "c": members[0],
			"createdAt": time.UnixMilli(base).UTC().Format(time.RFC3339Nano), "attr": map[string]any{"n": c}}
		src.call("POST", "/1.2/rtm/import/conversations", nil, []any{rec}, nil)
		for start := 0; start < msgs; start += 1000 {
			var page []map[string]any
			for i := start; i < min(start+1000, msgs); i++ {
				page = append(page, map[string]any{"msg-id": fmt.Sprintf("m%d-%d", c, i), "timestamp": base + int64(i)*1000 + int64(c),
					"from": members[i%3], "data": fmt.Sprintf(`{"_lctype":-1,"_lctext":"message %d of %d"}`, i, c)})
			}
			src.call("POST", "/1.2/rtm/import/messages", nil, map[string]any{"conv_id": cid, "messages": page}, nil)
		}
		unread := map[string]int{members[1]: c % 7}
		src.call("PUT", "/1.2/rtm/import/conversations/"+cid+"/unread", nil, map[string]any{"unread": unread}, nil)
	}
}
