package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestHS256Token checks the token signer against the well-known HS256
// example token (header {"alg":"HS256","typ":"JWT"}).
func TestHS256Token(t *testing.T) {
	got := hs256Token("your-256-bit-secret", []byte(`{"sub":"1234567890","name":"John Doe","iat":1516239022}`))
	want := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	if got != want {
		t.Fatalf("token\n got %s\nwant %s", got, want)
	}
	now := time.Unix(1700000000, 0)
	tok := connectionToken("s", "u1", now)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(claims, &c); err != nil || c.Sub != "u1" || c.Exp != now.Add(24*time.Hour).Unix() {
		t.Fatalf("claims %s: %+v %v", claims, c, err)
	}
}

// TestParseCfFrame parses a frame holding a reply, an error, a push and a
// ping, as Centrifugo batches them.
func TestParseCfFrame(t *testing.T) {
	frame := `{"id":1,"connect":{"client":"c","version":"6.9.1","ping":25,"pong":true}}` + "\n" +
		`{"id":2,"error":{"code":103,"message":"permission denied"}}` + "\n" +
		`{"push":{"channel":"ch","pub":{"data":"imbench:0:1:x"}}}` + "\n" +
		`{}`
	rs, err := parseCfFrame([]byte(frame))
	if err != nil || len(rs) != 4 {
		t.Fatalf("%d replies, %v", len(rs), err)
	}
	if rs[0].ID != 1 || rs[0].Connect == nil || rs[0].isPing() {
		t.Errorf("connect reply %+v", rs[0])
	}
	if rs[1].ID != 2 || rs[1].Error == nil || rs[1].Error.Code != 103 || rs[1].Error.Error() != "centrifugo: 103 permission denied" {
		t.Errorf("error reply %+v", rs[1])
	}
	if p := rs[2].Push; p == nil || p.Channel != "ch" || p.Pub == nil || string(p.Pub.Data) != `"imbench:0:1:x"` || rs[2].isPing() {
		t.Errorf("push %+v", rs[2])
	}
	if !rs[3].isPing() {
		t.Errorf("ping %+v", rs[3])
	}
	if _, err := parseCfFrame([]byte("{\"id\":1}\nnot json")); err == nil {
		t.Error("bad frame parsed")
	}
}
