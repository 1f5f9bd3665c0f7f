package client

import (
	"testing"
	"time"
)

func TestClientBackoffSchedule(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {8, 256 * time.Second},
		{9, 5 * time.Minute}, {30, 5 * time.Minute}, {200, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, DefaultReconnectBaseDelay, DefaultReconnectMaxDelay); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestClientRotate(t *testing.T) {
	got := rotate([]string{"a", "b", "c"}, "a")
	if len(got) != 3 || got[0] != "b" || got[1] != "c" || got[2] != "a" {
		t.Fatalf("rotate = %v", got)
	}
}

func TestClientConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", DefaultConfig("app", "ws://127.0.0.1:1/"), true},
		{"no app", Config{URLs: []string{"ws://x/"}}, false},
		{"no url", Config{AppID: "a"}, false},
		{"http url", DefaultConfig("a", "http://x/"), false},
		{"bad subprotocol", Config{AppID: "a", URLs: []string{"ws://x/"}, Subprotocol: "json"}, false},
		{"negative", Config{AppID: "a", URLs: []string{"ws://x/"}, RequestTimeout: -1}, false},
		{"router only", Config{AppID: "a", Server: "http://127.0.0.1:1"}, true},
		{"bad server", Config{AppID: "a", Server: "ws://127.0.0.1:1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestClientParseConversation(t *testing.T) {
	rec := map[string]any{
		"objectId": "5a5d7433c3422b31ed845e76", "name": "n", "c": "Tom", "m": []any{"Jerry", "Tom"},
		"createdAt": "2020-05-26T06:42:31.482Z", "lm": map[string]any{"__type": "Date", "iso": "2020-05-26T06:42:32.000Z"},
		"attr": map[string]any{"type": "private"}, "msg": "aGk=", "bin": true, "msg_mid": "m1", "msg_timestamp": float64(1590475352000),
	}
	info := parseConversation(rec)
	if info.ID != "5a5d7433c3422b31ed845e76" || info.Creator != "Tom" || len(info.Members) != 2 || info.Temporary {
		t.Fatalf("info = %+v", info)
	}
	if info.CreatedAt.UnixMilli() != 1590475351482 || info.LastMessageAt.UnixMilli() != 1590475352000 {
		t.Fatalf("dates = %v %v", info.CreatedAt, info.LastMessageAt)
	}
	if v, ok := info.Attr("attr.type"); !ok || v != "private" {
		t.Fatalf("attr.type = %v %v", v, ok)
	}
	if _, ok := info.Attributes["msg"]; ok {
		t.Fatal("last-message keys leaked into attributes")
	}
	if lm := info.LastMessage; lm == nil || string(lm.Binary) != "hi" || lm.ID != "m1" || lm.Timestamp.UnixMilli() != 1590475352000 {
		t.Fatalf("last message = %+v", info.LastMessage)
	}
	tmp := parseConversation(map[string]any{"objectId": "_tmp:abc", "ttl": float64(60)})
	if !tmp.Temporary || tmp.TTL != time.Minute {
		t.Fatalf("temporary = %+v", tmp)
	}
}
