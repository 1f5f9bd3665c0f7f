package session

import (
	"context"
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

// TestSessionTokensSweep: Sweep deletes expired tokens (and only those), so
// a login flood does not grow the store beyond the token TTL.
func TestSessionTokensSweep(t *testing.T) {
	st, err := store.Open(store.Config{Dir: "/db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	now := time.UnixMilli(1_700_000_000_000)
	tok := NewTokens(st, func(string, string) uint16 { return 3 }, time.Hour, func() time.Time { return now })
	for i := range 50 {
		if _, err := tok.Issue("app", "flood", Info{DeviceID: string(rune('a' + i%26))}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(30 * time.Minute)
	fresh, err := tok.Issue("app", "tom", Info{})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(45 * time.Minute) // the 50 are past their hour, tom's is not
	n, err := tok.Sweep(context.Background(), "app", 3, 0)
	if err != nil || n != 50 {
		t.Fatalf("Sweep = %d, %v; want the 50 expired tokens deleted", n, err)
	}
	left := 0
	if err := st.ScanPrefix(store.NewKey(3, "app", store.FamToken).Bytes(), false, func(_, _ []byte) (bool, error) {
		left++
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Fatalf("%d tokens left in the store, want 1", left)
	}
	if _, err := tok.Validate("app", "tom", fresh); err != nil {
		t.Fatalf("the live token was swept: %v", err)
	}
}
