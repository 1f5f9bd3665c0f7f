package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/store"
)

var testApps = map[string]App{
	"app-a": {ID: "app-a", Key: "key-a", MasterKey: "master-a"},
	"app-b": {ID: "app-b", Key: "key-b", MasterKey: "master-b"},
}

type fixture struct {
	t   *testing.T
	svc *Service
	srv *httptest.Server
	st  *store.Store
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	st, err := store.Open(store.Config{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store:              st,
		LookupApp:          func(id string) (App, bool) { a, ok := testApps[id]; return a, ok },
		PasswordIterations: 1000,
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = st.Close()
	})
	return &fixture{t: t, svc: svc, srv: srv, st: st}
}

type resp struct {
	status int
	body   map[string]any
	raw    []byte
}

// do sends a request; headers alternate name, value.
func (f *fixture) do(method, path string, body any, headers ...string) resp {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = f.srv.URL + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			f.t.Fatalf("%s %s: bad JSON %q: %v", method, path, raw, err)
		}
	}
	return out
}

func appKey(app string) []string {
	return []string{"X-LC-Id", app, "X-LC-Key", testApps[app].Key, "Content-Type", "application/json"}
}

func wantError(t *testing.T, r resp, status int, code float64) {
	t.Helper()
	if r.status != status || r.body["code"] != code || r.body["error"] == "" {
		t.Fatalf("got %d %s, want HTTP %d with code %v and an error text", r.status, r.raw, status, code)
	}
}

func TestStorageUserSignUpLogInMe(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	r := f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat", "nickname": "Tom"}, h...)
	if r.status != http.StatusCreated || r.body["objectId"] == nil || r.body["sessionToken"] == nil {
		t.Fatalf("signup: %d %s", r.status, r.raw)
	}
	id, token := r.body["objectId"].(string), r.body["sessionToken"].(string)
	if len(id) != 24 {
		t.Fatalf("objectId %q is not 24 hex characters", id)
	}
	wantError(t, f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "x"}, h...), 400, codeUsernameTaken)
	wantError(t, f.do("POST", "/1.1/users", map[string]any{"password": "x"}, h...), 400, codeUsernameEmpty)
	wantError(t, f.do("POST", "/1.1/users", map[string]any{"username": "jerry"}, h...), 400, codePasswordEmpty)
	wantError(t, f.do("POST", "/1.1/users", "not json", h...), 400, codeInvalidJSON)

	r = f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "cat"}, h...)
	if r.status != 200 || r.body["objectId"] != id || r.body["sessionToken"] != token || r.body["nickname"] != "Tom" {
		t.Fatalf("login: %d %s", r.status, r.raw)
	}
	if _, leaked := r.body["passwordHash"]; leaked {
		t.Fatalf("login leaks the password hash: %s", r.raw)
	}
	wantError(t, f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "dog"}, h...), 400, codeBadPassword)
	wantError(t, f.do("POST", "/1.1/login", map[string]any{"username": "nobody", "password": "x"}, h...), 400, codeBadPassword)

	r = f.do("GET", "/1.1/users/me", nil, append(h, "X-LC-Session", token)...)
	if r.status != 200 || r.body["username"] != "tom" || r.body["sessionToken"] != token {
		t.Fatalf("me: %d %s", r.status, r.raw)
	}
	wantError(t, f.do("GET", "/1.1/users/me", nil, append(h, "X-LC-Session", "bogus")...), 400, codeUserNotFound)
	r = f.do("GET", "/1.1/users/"+id, nil, h...)
	if r.status != 200 || r.body["username"] != "tom" || r.body["sessionToken"] != nil {
		t.Fatalf("get user: %d %s", r.status, r.raw)
	}

	got, err := f.svc.UserBySessionToken(context.Background(), "app-a", token)
	if err != nil || got != id {
		t.Fatalf("UserBySessionToken = %q, %v; want %q", got, err, id)
	}
	if _, err := f.svc.UserBySessionToken(context.Background(), "app-b", token); !errors.Is(err, ErrInvalidSessionToken) {
		t.Fatalf("token of app-a accepted for app-b: %v", err)
	}
	// Apps are isolated: the same username is free in another app.
	r = f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "cat"}, appKey("app-b")...)
	wantError(t, r, 400, codeBadPassword)
}

func TestStorageUserPersistsAcrossReopen(t *testing.T) {
	fs := vfs.NewMem()
	open := func() (*store.Store, *Service) {
		st, err := store.Open(store.Config{Dir: "db", FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := New(Config{Store: st, LookupApp: func(id string) (App, bool) { a, ok := testApps[id]; return a, ok }, PasswordIterations: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return st, svc
	}
	st, svc := open()
	srv := httptest.NewServer(svc.Handler())
	f := &fixture{t: t, svc: svc, srv: srv}
	r := f.do("POST", "/1.1/users", map[string]any{"username": "u", "password": "p"}, appKey("app-a")...)
	srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, svc = open()
	defer func() { _ = st.Close() }()
	id, err := svc.UserBySessionToken(context.Background(), "app-a", r.body["sessionToken"].(string))
	if err != nil || id != r.body["objectId"] {
		t.Fatalf("after reopen: %q, %v", id, err)
	}
}

func sign(key string, ts int64, master bool) string {
	sum := md5.Sum([]byte(strconv.FormatInt(ts, 10) + key))
	s := hex.EncodeToString(sum[:]) + "," + strconv.FormatInt(ts, 10)
	if master {
		s += ",master"
	}
	return s
}

func TestStorageAuth(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := newFixture(t, func(c *Config) { c.Now = func() time.Time { return now } })
	body := map[string]any{"name": "a.txt", "url": "https://example.invalid/a.txt"}
	cases := []struct {
		name    string
		headers []string
		status  int
	}{
		{"no headers", nil, 401},
		{"unknown app", []string{"X-LC-Id", "nope", "X-LC-Key", "key-a"}, 401},
		{"wrong key", []string{"X-LC-Id", "app-a", "X-LC-Key", "key-b"}, 401},
		{"other app's key", []string{"X-LC-Id", "app-b", "X-LC-Key", "key-a"}, 401},
		{"app key", []string{"X-LC-Id", "app-a", "X-LC-Key", "key-a"}, 201},
		{"master key", []string{"X-LC-Id", "app-a", "X-LC-Key", "master-a,master"}, 201},
		{"app key claimed as master", []string{"X-LC-Id", "app-a", "X-LC-Key", "key-a,master"}, 401},
		{"sign", []string{"X-LC-Id", "app-a", "X-LC-Sign", sign("key-a", now.UnixMilli(), false)}, 201},
		{"master sign", []string{"X-LC-Id", "app-a", "X-LC-Sign", sign("master-a", now.UnixMilli(), true)}, 201},
		{"sign with wrong key", []string{"X-LC-Id", "app-a", "X-LC-Sign", sign("key-b", now.UnixMilli(), false)}, 401},
		{"stale sign", []string{"X-LC-Id", "app-a", "X-LC-Sign", sign("key-a", now.Add(-time.Hour).UnixMilli(), false)}, 401},
		{"malformed sign", []string{"X-LC-Id", "app-a", "X-LC-Sign", "abc"}, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.do("POST", "/1.1/files", body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.raw, c.status)
			}
			if c.status == 401 && (r.body["code"] != float64(401) || r.body["error"] != "Unauthorized.") {
				t.Fatalf("401 body %s", r.raw)
			}
		})
	}
	wantError(t, f.do("GET", "/1.1/classes/Todo", nil, appKey("app-a")...), 404, codeNotFound)
}

func TestStorageFileUpload(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	st := f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat"}, h...).body["sessionToken"].(string)
	r := f.do("POST", "/1.1/fileTokens", map[string]any{"name": "avatar.jpg", "metaData": map[string]any{"size": 5, "owner": "x"}}, append(h, "X-LC-Session", st)...)
	if r.status != 200 || r.body["provider"] != "s3" || r.body["mime_type"] != "image/jpeg" {
		t.Fatalf("fileTokens: %d %s", r.status, r.raw)
	}
	id, uploadURL, fileURL := r.body["objectId"].(string), r.body["upload_url"].(string), r.body["url"].(string)
	if !strings.HasPrefix(uploadURL, f.srv.URL+"/1.1/fileUpload/") || !strings.HasPrefix(fileURL, f.srv.URL+"/1.1/files/") {
		t.Fatalf("upload_url %q / url %q do not point back at the server", uploadURL, fileURL)
	}
	if r := f.do("GET", fileURL, nil); r.status != 404 {
		t.Fatalf("content before upload: %d", r.status)
	}
	if r := f.do("PUT", strings.Replace(uploadURL, "token=", "token=x", 1), []byte("hello")); r.status != 403 {
		t.Fatalf("upload with a wrong token: %d %s", r.status, r.raw)
	}
	if r := f.do("PUT", uploadURL, []byte("hello"), "Content-Type", "image/jpeg"); r.status != 200 {
		t.Fatalf("upload: %d %s", r.status, r.raw)
	}
	if r := f.do("PUT", uploadURL, []byte("again")); r.status != 403 {
		t.Fatalf("second upload with the same token: %d %s", r.status, r.raw)
	}
	if r := f.do("POST", "/1.1/fileCallback", map[string]any{"token": r.body["token"], "result": true}, h...); r.status != 200 {
		t.Fatalf("callback: %d %s", r.status, r.raw)
	}
	r = f.do("GET", fileURL, nil)
	if r.status != 200 || string(r.raw) != "hello" {
		t.Fatalf("content: %d %q", r.status, r.raw)
	}
	r = f.do("GET", "/1.1/files/"+id, nil, h...)
	meta, _ := r.body["metaData"].(map[string]any)
	if r.status != 200 || r.body["url"] != fileURL || r.body["name"] != "avatar.jpg" || meta["size"] != float64(5) {
		t.Fatalf("file record: %d %s", r.status, r.raw)
	}
	wantError(t, f.do("DELETE", "/1.1/files/"+id, nil, h...), 403, 403)
	if r := f.do("DELETE", "/1.1/files/"+id, nil, append(h, "X-LC-Session", st)...); r.status != 200 {
		t.Fatalf("owner delete: %d %s", r.status, r.raw)
	}
	wantError(t, f.do("GET", "/1.1/files/"+id, nil, h...), 404, codeObjectMissing)
	if r := f.do("GET", fileURL, nil); r.status != 404 {
		t.Fatalf("content after delete: %d", r.status)
	}
}

func TestStorageFileCallbackFailureDropsFile(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	r := f.do("POST", "/1.1/fileTokens", map[string]any{"name": "x.bin", "metaData": map[string]any{}}, h...)
	id, token := r.body["objectId"].(string), r.body["token"].(string)
	if r := f.do("POST", "/1.1/fileCallback", map[string]any{"token": token, "result": false}, h...); r.status != 200 {
		t.Fatalf("callback: %d %s", r.status, r.raw)
	}
	wantError(t, f.do("GET", "/1.1/files/"+id, nil, h...), 404, codeObjectMissing)
	wantError(t, f.do("POST", "/1.1/fileCallback", map[string]any{"token": token, "result": true}, h...), 404, codeObjectMissing)
}

func TestStorageFileTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxFileSize = 16 })
	h := appKey("app-a")
	r := f.do("POST", "/1.1/fileTokens", map[string]any{"name": "big.bin", "metaData": map[string]any{}}, h...)
	uploadURL := r.body["upload_url"].(string)
	r = f.do("PUT", uploadURL, bytes.Repeat([]byte("x"), 17))
	wantError(t, r, http.StatusRequestEntityTooLarge, codeFileTooLarge)
	if !strings.Contains(r.body["error"].(string), "16-byte") {
		t.Fatalf("413 error does not name the limit: %s", r.raw)
	}
	if r := f.do("PUT", uploadURL, bytes.Repeat([]byte("x"), 16)); r.status != 200 {
		t.Fatalf("upload at the limit: %d %s", r.status, r.raw)
	}
}

func TestStorageExternalFile(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	r := f.do("POST", "/1.1/files", map[string]any{
		"name": "萌妹子", "url": "http://pic2.zhimg.com/6c10e6053c739ed0ce676a0aff15cf1c.gif",
		"metaData": map[string]any{"owner": "unknown", "__source": "external", "size": 0},
	}, h...)
	if r.status != 201 || r.body["objectId"] == nil {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/1.1/files/"+r.body["objectId"].(string), nil, h...)
	if r.status != 200 || r.body["url"] != "http://pic2.zhimg.com/6c10e6053c739ed0ce676a0aff15cf1c.gif" || r.body["name"] != "萌妹子" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	wantError(t, f.do("POST", "/1.1/files", map[string]any{"name": "x", "url": "javascript:alert(1)"}, h...), 400, codeInvalidJSON)
	wantError(t, f.do("POST", "/1.1/files", map[string]any{"name": "x", "url": "http://a/b", "metaData": 3}, h...), 400, codeInvalidJSON)
}
