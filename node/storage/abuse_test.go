package storage

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestStorageAbuseUploadTokenCheckedBeforeBody: an upload with a wrong
// token is refused from its headers alone. The request announces 1 MiB (under the size limit) and
// sends none of it; a server that reads the body before checking the token
// never answers (the bound: an answer within 5 s having read 0 body bytes).
func TestStorageAbuseUploadTokenCheckedBeforeBody(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do("POST", "/1.1/fileTokens", map[string]any{"name": "a.bin", "metaData": map[string]any{}}, appKey("app-a")...)
	u, err := url.Parse(r.body["upload_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, query string }{
		{"wrong token", u.Path, strings.Replace(u.RawQuery, "token=", "token=bogus", 1)},
		{"unknown file", "/1.1/fileUpload/000000000000000000000000", u.RawQuery},
		{"another app", u.Path, strings.Replace(u.RawQuery, "app=app-a", "app=app-b", 1)},
	}
	for _, tt := range tests {
		req := "PUT " + tt.path + "?" + tt.query + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
		if status := rawStatus(t, u.Host, req); status != http.StatusForbidden {
			t.Fatalf("%s: status %d, want 403 before the body", tt.name, status)
		}
	}
	// The real token is still good.
	if r := f.do("PUT", r.body["upload_url"].(string), []byte("ok")); r.status != 200 {
		t.Fatalf("upload with the real token: %d %s", r.status, r.raw)
	}
}

// rawStatus writes req on a fresh connection and returns the status code of
// the answer, failing the test when none arrives within 5 s.
func rawStatus(t *testing.T, host, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to headers alone: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestStorageAbuseLoginDoesNotEnumerate: an unknown username and a wrong
// password get the same answer.
func TestStorageAbuseLoginDoesNotEnumerate(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat"}, h...)
	wrong := f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "dog"}, h...)
	unknown := f.do("POST", "/1.1/login", map[string]any{"username": "nobody", "password": "dog"}, h...)
	if wrong.status != unknown.status || string(wrong.raw) != string(unknown.raw) {
		t.Fatalf("wrong password %d %s, unknown user %d %s: the answers tell them apart", wrong.status, wrong.raw, unknown.status, unknown.raw)
	}
}

// TestStorageAbuseFailedLoginLimit: after FailedLoginsPerUser wrong
// passwords a username is locked (219) for the window, even for the right
// password; other usernames are not.
func TestStorageAbuseFailedLoginLimit(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := newFixture(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.LookupApp = func(id string) (App, bool) {
			a, ok := testApps[id]
			a.FailedLoginsPerUser = 3
			return a, ok
		}
	})
	h := appKey("app-a")
	f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat"}, h...)
	f.do("POST", "/1.1/users", map[string]any{"username": "jerry", "password": "mouse"}, h...)
	for i := range 3 {
		wantError(t, f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": fmt.Sprint("guess", i)}, h...), 400, codeBadPassword)
	}
	r := f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "cat"}, h...)
	wantError(t, r, http.StatusTooManyRequests, codeLoginLocked)
	if r := f.do("POST", "/1.1/login", map[string]any{"username": "jerry", "password": "mouse"}, h...); r.status != 200 {
		t.Fatalf("another user's login: %d %s", r.status, r.raw)
	}
	now = now.Add(15 * time.Minute)
	if r := f.do("POST", "/1.1/login", map[string]any{"username": "tom", "password": "cat"}, h...); r.status != 200 {
		t.Fatalf("login after the window: %d %s", r.status, r.raw)
	}
}

// TestStorageAbuseAccountRequestRate: sign-ups and logins from one address
// beyond AccountRequestsPerMinutePerIP are answered 429.
func TestStorageAbuseAccountRequestRate(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.LookupApp = func(id string) (App, bool) {
			a, ok := testApps[id]
			a.AccountRequestsPerMinutePerIP = 5
			return a, ok
		}
	})
	h := appKey("app-a")
	for i := range 5 {
		if r := f.do("POST", "/1.1/users", map[string]any{"username": fmt.Sprint("u", i), "password": "p"}, h...); r.status != 201 {
			t.Fatalf("sign-up %d: %d %s", i, r.status, r.raw)
		}
	}
	wantError(t, f.do("POST", "/1.1/login", map[string]any{"username": "u0", "password": "p"}, h...), http.StatusTooManyRequests, codeTooMany)
	wantError(t, f.do("POST", "/1.1/users", map[string]any{"username": "u9", "password": "p"}, h...), http.StatusTooManyRequests, codeTooMany)
}

// TestStorageAbuseUserPublicFields: another client reads a user's public
// fields only; the user and the master key see the email.
func TestStorageAbuseUserPublicFields(t *testing.T) {
	f := newFixture(t, nil)
	h := appKey("app-a")
	r := f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat", "email": "tom@example.invalid", "nickname": "Tom"}, h...)
	id, token := r.body["objectId"].(string), r.body["sessionToken"].(string)
	other := f.do("GET", "/1.1/users/"+id, nil, h...)
	if other.status != 200 || other.body["username"] != "tom" || other.body["nickname"] != "Tom" {
		t.Fatalf("public read: %d %s", other.status, other.raw)
	}
	for _, private := range []string{"email", "sessionToken", "emailVerified", "passwordHash", "salt"} {
		if _, ok := other.body[private]; ok {
			t.Fatalf("another client sees %s: %s", private, other.raw)
		}
	}
	self := f.do("GET", "/1.1/users/"+id, nil, append(h, "X-LC-Session", token)...)
	master := f.do("GET", "/1.1/users/"+id, nil, "X-LC-Id", "app-a", "X-LC-Key", "master-a,master")
	for _, r := range []resp{self, master} {
		if r.status != 200 || r.body["email"] != "tom@example.invalid" {
			t.Fatalf("the user or the master key does not see the email: %d %s", r.status, r.raw)
		}
	}
}
