package presence

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/wire"
)

func TestPresenceWirePush(t *testing.T) {
	tests := []struct {
		app    string
		ids    []string
		except conversation.SessionID
		frame  []byte
	}{
		{"app", []string{"alice", "bob"}, 42, []byte{8, 1, 16, 2}},
		{"", nil, 0, nil},
		{"a", []string{""}, math.MaxUint64, bytes.Repeat([]byte{0}, 300)},
	}
	for _, tt := range tests {
		b := pushPayload(tt.app, tt.ids, tt.except, tt.frame)
		app, ids, except, frame, err := decodePush(&wire.Dec{B: b})
		if err != nil {
			t.Fatal(err)
		}
		if app != tt.app || !slices.Equal(ids, tt.ids) || except != tt.except || !bytes.Equal(frame, tt.frame) {
			t.Fatalf("round trip = %q %q %d %x", app, ids, except, frame)
		}
		for n := range len(b) {
			if _, _, _, _, err := decodePush(&wire.Dec{B: b[:n]}); !errors.Is(err, wire.ErrShortPayload) {
				t.Fatalf("prefix %d/%d of push decoded: %v", n, len(b), err)
			}
		}
	}
}

func FuzzDecodePush(f *testing.F) {
	f.Add(pushPayload("app", []string{"a", "b"}, 3, []byte("frame")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if app, ids, except, frame, err := decodePush(&wire.Dec{B: b}); err == nil {
			b2 := pushPayload(app, ids, except, frame)
			app2, ids2, except2, frame2, err := decodePush(&wire.Dec{B: b2})
			if err != nil || app2 != app || !slices.Equal(ids2, ids) || except2 != except || !bytes.Equal(frame2, frame) {
				t.Fatalf("re-encoded push does not round-trip: %v", err)
			}
		}
	})
}
