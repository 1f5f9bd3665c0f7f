package apps

import (
	"crypto/md5" //nolint:gosec // protocol-mandated
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestAppsSignature(t *testing.T) {
	a := App{ID: "app", Key: "k", MasterKey: "master"}
	now := time.UnixMilli(1_700_000_000_000)
	msg := LoginMessage("app", "tom", now.UnixMilli(), "nonce")
	if msg != "app:tom::1700000000000:nonce" {
		t.Fatalf("LoginMessage = %q", msg)
	}
	good := a.Sign(msg)
	tests := []struct {
		name string
		msg  string
		s    string
		t    int64
		ok   bool
	}{
		{"valid ms", msg, good, now.UnixMilli(), true},
		{"valid seconds", LoginMessage("app", "tom", now.Unix(), "nonce"), a.Sign(LoginMessage("app", "tom", now.Unix(), "nonce")), now.Unix(), true},
		{"uppercase hex accepted", msg, toUpper(good), now.UnixMilli(), true},
		{"wrong signature", msg, a.Sign("other"), now.UnixMilli(), false},
		{"missing", msg, "", now.UnixMilli(), false},
		{"expired", LoginMessage("app", "tom", now.Add(-7*time.Hour).UnixMilli(), "nonce"), a.Sign(LoginMessage("app", "tom", now.Add(-7*time.Hour).UnixMilli(), "nonce")), now.Add(-7 * time.Hour).UnixMilli(), false},
	}
	for _, tt := range tests {
		err := a.Verify(tt.msg, tt.s, tt.t, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrSignature) {
			t.Errorf("%s: error %v does not wrap ErrSignature", tt.name, err)
		}
	}
}

func TestAppsConversationMessage(t *testing.T) {
	if got := ConversationMessage("a", "tom", "", []string{"mary", "jerry"}, 5, "n", "create"); got != "a:tom:jerry:mary:5:n" {
		t.Fatalf("create = %q", got)
	}
	if got := ConversationMessage("a", "tom", "c1", []string{"b", "a"}, 5, "n", "invite"); got != "a:tom:c1:a:b:5:n:invite" {
		t.Fatalf("invite = %q", got)
	}
}

func TestAppsRegistry(t *testing.T) {
	if _, err := NewRegistry([]App{Dev(), Dev()}); err == nil {
		t.Fatal("duplicate app accepted")
	}
	if _, err := NewRegistry([]App{{ID: "x", Key: "k", MasterKey: "k"}}); err == nil {
		t.Fatal("appKey == masterKey accepted")
	}
	r, err := NewRegistry([]App{Dev()})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := r.Lookup(DevAppID); !ok || a.MasterKey != DevMasterKey {
		t.Fatal("dev app not found")
	}
	if _, ok := r.Lookup("other"); ok {
		t.Fatal("unknown app found")
	}
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func TestAppsAuthenticateREST(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	sign := func(ts int64, secret string, master bool) string {
		s := md5hex(strconv.FormatInt(ts, 10)+secret) + "," + strconv.FormatInt(ts, 10)
		if master {
			s += ",master"
		}
		return s
	}
	ms := now.UnixMilli()
	tests := []struct {
		name       string
		key, sign  string
		master, ok bool
	}{
		{"app key", "k", "", false, true},
		{"master key", "m,master", "", true, true},
		{"wrong key", "x", "", false, false},
		{"app key used as master", "k,master", "", true, false},
		{"sign with app key", "", sign(ms, "k", false), false, true},
		{"sign with master key", "", sign(ms, "m", true), true, true},
		{"sign too old", "", sign(ms-int64(time.Hour/time.Millisecond), "k", false), false, false},
		{"sign with wrong secret", "", sign(ms, "x", false), false, false},
		{"sign malformed", "", "abc", false, false},
		{"nothing", "", "", false, false},
	}
	for _, tt := range tests {
		master, ok := AuthenticateREST("k", "m", tt.key, tt.sign, now, RESTSignWindow)
		if ok != tt.ok || (ok && master != tt.master) {
			t.Errorf("%s: master %v ok %v, want %v %v", tt.name, master, ok, tt.master, tt.ok)
		}
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // protocol-mandated
	return hex.EncodeToString(sum[:])
}

// TestAppsFileLimits: the "limits" object of the apps file (the example of
// docs/security.md) sets what it names; a missing field takes the default
// and a negative one stays (the limit is off).
func TestAppsFileLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apps.json")
	data := `{"apps": [{"appId": "my-app", "appKey": "k1", "masterKey": "m1",
	           "limits": {"loginsPerSecond": 500, "concurrentQueries": 16, "queriesPerSecondPerSession": 50}},
	          {"appId": "plain", "appKey": "k2", "masterKey": "m2"},
	          {"appId": "unlimited", "appKey": "k3", "masterKey": "m3", "limits": {"queriesPerSecondPerSession": -1}}]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(list)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]Limits{
		"my-app":    {LoginsPerSecond: 500, ConcurrentQueries: 16, QueriesPerSecondPerSession: 50},
		"plain":     {LoginsPerSecond: 200, ConcurrentQueries: 8, QueriesPerSecondPerSession: 20},
		"unlimited": {LoginsPerSecond: 200, ConcurrentQueries: 8, QueriesPerSecondPerSession: -1},
	} {
		a, _ := r.Lookup(id)
		got := a.Limits
		if got.LoginsPerSecond != want.LoginsPerSecond || got.ConcurrentQueries != want.ConcurrentQueries ||
			got.QueriesPerSecondPerSession != want.QueriesPerSecondPerSession || got.QueryScanBudget != DefaultLimits.QueryScanBudget {
			t.Errorf("%s: limits %+v, want %+v (scan budget default)", id, got, want)
		}
	}
}
