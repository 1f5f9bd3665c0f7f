package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// otherApp is a second tenant with login signatures on.
var otherApp = apps.App{ID: "other-app", Key: "other-key", MasterKey: "other-master", LoginSignature: true}

func twoApps(c *node.Config) { c.Apps = append(c.Apps, otherApp) }

// call performs an HTTP request against the node's client port and decodes
// the JSON answer. A "Host" entry of headers is sent as the Host header.
func call(t *testing.T, n *node.Node, method, path string, headers map[string]string, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.ClientAddr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if h, ok := headers["Host"]; ok {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: non-JSON answer %q", method, path, data)
	}
	return resp.StatusCode, out
}

// callList is call for endpoints that answer a JSON array of objects.
func callList(t *testing.T, n *node.Node, method, path string, headers map[string]string, body string) (int, []map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.ClientAddr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	var out []map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: %d, not a JSON array: %q", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

func master(app apps.App) map[string]string {
	return map[string]string{"X-LC-Id": app.ID, "X-LC-Key": app.MasterKey + ",master", "Content-Type": "application/json"}
}

func TestNodeRESTRoute(t *testing.T) {
	n := startNode(t, nil)
	code, body := call(t, n, "GET", "/v1/route?appId="+apps.DevAppID+"&secure=false", nil, "")
	want := "ws://" + n.ClientAddr().String()
	if code != 200 || body["server"] != want || body["secondary"] != want || body["ttl"] == nil {
		t.Fatalf("route = %d %v, want server %s", code, body, want)
	}
	if code, body := call(t, n, "GET", "/v1/route?appId=unknown", nil, ""); code != 404 || body["code"] == nil || body["error"] == nil {
		t.Fatalf("route for an unknown app = %d %v", code, body)
	}
}

func TestNodeRESTServerAPI(t *testing.T) {
	n := startNode(t, twoApps)
	dev := apps.Dev()
	code, created := call(t, n, "POST", "/1.1/rtm/conversations", master(dev),
		`{"client_id":"Tom","members":["Jerry"],"name":"Tom & Jerry","unique":true,"attributes":{"type":"private"}}`)
	if code != 201 || created["objectId"] == "" {
		t.Fatalf("create = %d %v", code, created)
	}
	cid := created["objectId"].(string)
	code, sent := call(t, n, "POST", "/1.1/rtm/conversations/"+cid+"/messages", master(dev), `{"from_client":"Tom","message":"hello from the back end"}`)
	if code != 200 || sent["msg-id"] == "" {
		t.Fatalf("send = %d %v", code, sent)
	}
	code, hist := callList(t, n, "GET", "/1.1/rtm/conversations/"+cid+"/messages?limit=10", master(dev), "")
	if code != 200 || len(hist) != 1 || hist[0]["data"] != "hello from the back end" {
		t.Fatalf("history = %d %v", code, hist)
	}
	code, got := call(t, n, "GET", "/1.1/rtm/conversations/"+cid, master(dev), "")
	results, _ := got["results"].([]any)
	if code != 200 || len(results) != 1 || results[0].(map[string]any)["type"] != "private" {
		t.Fatalf("get = %d %v", code, got)
	}

	// The app key is not enough for the server API, and a wrong key is refused.
	appKeyOnly := map[string]string{"X-LC-Id": dev.ID, "X-LC-Key": dev.Key}
	if code, body := call(t, n, "GET", "/1.1/rtm/conversations/"+cid, appKeyOnly, ""); code != 403 || body["error"] == nil {
		t.Fatalf("server API with the app key = %d %v", code, body)
	}
	wrong := map[string]string{"X-LC-Id": dev.ID, "X-LC-Key": "nope,master"}
	if code, _ := call(t, n, "GET", "/1.1/rtm/conversations/"+cid, wrong, ""); code != 401 {
		t.Fatalf("server API with a wrong master key = %d", code)
	}
	// Another app never sees the conversation, even by id.
	code, other := call(t, n, "GET", "/1.1/rtm/conversations/"+cid, master(otherApp), "")
	if results, _ := other["results"].([]any); code != 200 || len(results) != 0 {
		t.Fatalf("other app sees the conversation: %d %v", code, other)
	}
	if code, body := call(t, n, "POST", "/1.1/rtm/conversations/"+cid+"/messages", master(otherApp), `{"from_client":"Tom","message":"x"}`); code == 200 || body["code"] != float64(4401) {
		t.Fatalf("other app sending into the conversation = %d %v, want 4401", code, body)
	}
	// Bad input gets a JSON error, not a crash.
	if code, body := call(t, n, "POST", "/1.1/rtm/conversations", master(dev), `{"client_id":`); code != 400 || body["error"] == nil {
		t.Fatalf("malformed body = %d %v", code, body)
	}
	if code, body := call(t, n, "GET", "/1.1/rtm/conversations?where=%7Bbad&client_id=Tom", master(dev), ""); code != 400 || body["code"] != float64(4310) {
		t.Fatalf("malformed where = %d %v, want 4310", code, body)
	}
}

func TestNodeLoginSignatureEnforcedPerApp(t *testing.T) {
	n := startNode(t, twoApps)
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	open := func(i int32, app, client string, sm *pb.SessionCommand) *pb.GenericCommand {
		c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(i),
			AppId: proto.String(app), PeerId: proto.String(client), SessionMessage: sm})
		return c.recv()
	}
	// Signatures off: fake values are ignored.
	if r := open(1, apps.DevAppID, "a", &pb.SessionCommand{S: proto.String("signature"), N: proto.String("nonce"), T: proto.Int64(1)}); r.GetOp() != pb.OpType_opened {
		t.Fatalf("fake signature with signing off: %v", r)
	}
	// Signatures on: missing or wrong ones are refused with 4102.
	if r := open(2, otherApp.ID, "b", nil); r.GetErrorMessage().GetCode() != 4102 || r.GetErrorMessage().GetReason() != "SIGNATURE_FAILED" {
		t.Fatalf("missing signature: %v", r)
	}
	now := time.Now().UnixMilli()
	if r := open(3, otherApp.ID, "b", &pb.SessionCommand{S: proto.String("00"), N: proto.String("n"), T: proto.Int64(now)}); r.GetErrorMessage().GetCode() != 4102 {
		t.Fatalf("wrong signature: %v", r)
	}
	sig := otherApp.Sign(apps.LoginMessage(otherApp.ID, "b", now, "n"))
	if r := open(4, otherApp.ID, "b", &pb.SessionCommand{S: proto.String(sig), N: proto.String("n"), T: proto.Int64(now)}); r.GetOp() != pb.OpType_opened {
		t.Fatalf("valid signature: %v", r)
	}
}

func TestNodeBackupRestores(t *testing.T) {
	backups := filepath.Join(t.TempDir(), "backups") // created by the node
	n := startNode(t, func(c *node.Config) { c.BackupDir = backups })
	dev := apps.Dev()
	_, created := call(t, n, "POST", "/1.1/rtm/conversations", master(dev), `{"client_id":"Tom","members":["Jerry"],"name":"kept"}`)
	cid, _ := created["objectId"].(string)
	if _, sent := call(t, n, "POST", "/1.1/rtm/conversations/"+cid+"/messages", master(dev), `{"from_client":"Tom","message":"backed up"}`); sent["msg-id"] == nil {
		t.Fatalf("send: %v", sent)
	}
	admin := func(n *node.Node, body string) (int, string) {
		resp, err := http.Post("http://"+n.AdminAddr().String()+node.PathBackup, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(backups, "link")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"../escape", outside + "/abs", backups, "link/through-symlink", ""} {
		if code, body := admin(n, `{"dir":"`+dir+`"}`); code != 400 {
			t.Fatalf("backup to %q: %d %s, want 400", dir, code, body)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("a refused backup wrote outside the backup dir: %v", entries)
	}
	if code, body := admin(n, `{"dir":"snap-1"}`); code != 200 {
		t.Fatalf("backup: %d %s", code, body)
	}
	if code, _ := admin(n, `{"dir":"`+backups+`/snap-1"}`); code != 409 {
		t.Fatalf("backup into an existing dir: %d", code)
	}
	if code, body := admin(startNode(t, nil), `{"dir":"snap"}`); code != 403 || !strings.Contains(body, "--backup-dir") {
		t.Fatalf("backup without a backup dir: %d %s, want 403 naming --backup-dir", code, body)
	}
	restored := startNode(t, func(c *node.Config) { c.DataDir = filepath.Join(backups, "snap-1") })
	_, hist := callList(t, restored, "GET", "/1.1/rtm/conversations/"+cid+"/messages", master(dev), "")
	if len(hist) != 1 {
		t.Fatalf("restored node history = %v", hist)
	}
}

func TestNodeRESTCORSPreflight(t *testing.T) {
	n := startNode(t, nil)
	req, _ := http.NewRequest("OPTIONS", "http://"+n.ClientAddr().String()+"/1.1/fileUpload/abc", nil)
	req.Header.Set("Origin", "http://127.0.0.1:1")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	req.Header.Set("Access-Control-Request-Headers", "cache-control,content-type,x-lc-id")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "*" ||
		h.Get("Access-Control-Allow-Headers") != "cache-control,content-type,x-lc-id" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Fatalf("preflight answered %d %v", resp.StatusCode, h)
	}
}

func TestNodeConversationSignaturesAndPatchSwitches(t *testing.T) {
	strict := apps.App{ID: "strict", Key: "strict-key", MasterKey: "strict-master", ConversationSignature: true, DisableEdit: true, DisableRecall: true}
	n := startNode(t, func(c *node.Config) { c.Apps = append(c.Apps, strict) })
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(1),
		AppId: proto.String(strict.ID), PeerId: proto.String("tom"), SessionMessage: &pb.SessionCommand{}})
	if r := c.recv(); r.GetOp() != pb.OpType_opened {
		t.Fatalf("login: %v", r)
	}
	start := func(i int32, s string, ts int64) *pb.GenericCommand {
		c.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(i),
			ConvMessage: &pb.ConvCommand{M: []string{"jerry", "tom"}, S: proto.String(s), T: proto.Int64(ts), N: proto.String("n"),
				Attr: protocol.JSON("{}")}})
		return c.recv()
	}
	now := time.Now().UnixMilli()
	if r := start(2, "signature", now); r.GetErrorMessage().GetCode() != 4302 || r.GetErrorMessage().GetReason() != "CONVERSATION_SIGNATURE_FAILED" {
		t.Fatalf("fake conversation signature: %v", r)
	}
	sig := strict.Sign(apps.ConversationMessage(strict.ID, "tom", "", []string{"tom", "jerry"}, now, "n", "create"))
	r := start(3, sig, now)
	if r.GetOp() != pb.OpType_started {
		t.Fatalf("signed conv/start: %v", r)
	}
	cid := r.GetConvMessage().GetCid()
	for _, recall := range []bool{false, true} {
		c.send(&pb.GenericCommand{Cmd: pb.CommandType_patch.Enum(), Op: pb.OpType_modify.Enum(), I: proto.Int32(4),
			PatchMessage: &pb.PatchCommand{Patches: []*pb.PatchItem{{Cid: proto.String(cid), Mid: proto.String("m"), Recall: proto.Bool(recall)}}}})
		want := int32(4406)
		if recall {
			want = 4407
		}
		if r := c.recvResponse(4); r.GetErrorMessage().GetCode() != want {
			t.Fatalf("patch (recall=%v) with the switch off: %v, want %d", recall, r, want)
		}
	}
}

func TestNodeAdminDrainAndCancel(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.AdminToken = "secret" })
	ac := adminapi.NewClient("http://"+n.AdminAddr().String(), "secret", nil)
	ctx := context.Background()
	if _, err := adminapi.NewClient("http://"+n.AdminAddr().String(), "wrong", nil).Node(ctx); err == nil {
		t.Fatal("admin API accepted a wrong token")
	}
	c := dialRaw(t, n, protocol.SubprotocolBinary)
	login(t, c, 1, "tom", nil)
	if _, err := ac.StartDrain(ctx); err != nil {
		t.Fatal(err)
	}
	if r := c.recv(); r.GetCmd() != pb.CommandType_goaway || r.I != nil {
		t.Fatalf("after drain the client got %v, want goaway", r)
	}
	if st, err := ac.Node(ctx); err != nil || st.State != adminapi.StateDraining {
		t.Fatalf("node during drain = %+v, %v", st, err)
	}
	if err := ac.Readyz(ctx); err == nil {
		t.Fatal("draining node reports ready")
	}
	if err := ac.CancelDrain(ctx); err != nil {
		t.Fatal(err)
	}
	// The node rejoins, catches its shards up again and turns active.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ac.Node(ctx)
		if err == nil && st.State == adminapi.StateActive && ac.Readyz(ctx) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node after cancel = %+v, %v; want active and ready", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dialRaw(t, n, protocol.SubprotocolBinary) // accepts connections again
}

// TestNodeAdminPprof: Go's profiles are on the admin port behind the admin
// token, and a profile's duration is bounded.
func TestNodeAdminPprof(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.AdminToken = "secret" })
	base := "http://" + n.AdminAddr().String()
	get := func(path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
		if code, _ := get(path, ""); code != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token: %d, want 401", path, code)
		}
	}
	if code, body := get("/debug/pprof/goroutine?debug=1", "secret"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("goroutine profile: %d %.200s", code, body)
	}
	if code, body := get("/debug/pprof/profile?seconds=1", "secret"); code != http.StatusOK || len(body) == 0 {
		t.Fatalf("CPU profile: %d, %d bytes", code, len(body))
	}
	for _, s := range []string{"0", "61", "3600", "x"} {
		if code, _ := get("/debug/pprof/profile?seconds="+s, "secret"); code != http.StatusBadRequest {
			t.Fatalf("CPU profile of %s seconds: %d, want 400", s, code)
		}
	}
}
