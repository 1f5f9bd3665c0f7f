package session

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/store"
)

func TestSessionTokens(t *testing.T) {
	st, err := store.Open(store.Config{Dir: "/db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	now := time.UnixMilli(1_700_000_000_000)
	tok := NewTokens(st, func(string, string) uint16 { return 7 }, time.Hour, func() time.Time { return now })
	s, err := tok.Issue("app", "tom", Info{Tag: "Mobile"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := tok.Validate("app", "tom", s)
	if err != nil || info.Tag != "Mobile" {
		t.Fatalf("Validate = %+v, %v", info, err)
	}
	for _, tc := range []struct{ app, client, token string }{
		{"app", "jerry", s}, {"other", "tom", s}, {"app", "tom", "bogus"}, {"app", "tom", ""},
	} {
		if _, err := tok.Validate(tc.app, tc.client, tc.token); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Validate(%q, %q, %q) = %v, want ErrInvalidToken", tc.app, tc.client, tc.token, err)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, err := tok.Validate("app", "tom", s); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token accepted: %v", err)
	}
	now = now.Add(-2 * time.Hour)
	if err := tok.Revoke("app", "tom", s); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Validate("app", "tom", s); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token accepted: %v", err)
	}
}
