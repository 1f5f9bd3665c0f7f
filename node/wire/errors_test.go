package wire

import (
	"errors"
	"fmt"
	"testing"

	"github.com/imcluster/imcluster/node/transport"
)

// TestWireErrorCodes: a coded handler error crosses the transport as text
// (RemoteError) and Decode matches it to its sentinel with errors.Is,
// wrapped or not, and keeps it retryable; uncoded or unknown codes stay
// plain remote errors.
func TestWireErrorCodes(t *testing.T) {
	for _, s := range []*Error{ErrNotReady, ErrNoCoordinator, ErrQuorum, ErrNotHolder, ErrNotStarted} {
		for _, handlerErr := range []error{s, Wrap(s, errors.New("detail")), fmt.Errorf("context: %w", s)} {
			remote := &transport.RemoteError{Peer: "n1", Message: handlerErr.Error(), Temporary: transport.IsRetryable(handlerErr)}
			got := Decode(fmt.Errorf("call: %w", remote))
			if !errors.Is(got, s) {
				t.Fatalf("%q decoded to %v, want code %d", remote.Message, got, s.Code)
			}
			for _, other := range []*Error{ErrNotReady, ErrNoCoordinator, ErrQuorum, ErrNotHolder, ErrNotStarted} {
				if other != s && errors.Is(got, other) {
					t.Fatalf("%q also matches code %d", remote.Message, other.Code)
				}
			}
			var re *transport.RemoteError
			if !errors.As(got, &re) || !transport.IsRetryable(got) {
				t.Fatalf("%q: remote error lost or not retryable", remote.Message)
			}
		}
	}
	for _, msg := range []string{"cluster: replica not caught up or not coordinating", "[code 99] unknown", "[code x] bad", "[code 1"} {
		got := Decode(&transport.RemoteError{Peer: "n1", Message: msg})
		if errors.Is(got, ErrNotReady) {
			t.Fatalf("%q decoded to a code", msg)
		}
	}
	if Decode(nil) != nil {
		t.Fatal("Decode(nil) != nil")
	}
	plain := errors.New("local")
	if Decode(plain) != plain {
		t.Fatal("a local error changed")
	}
}

func TestWireTooLargeIsNotRetryable(t *testing.T) {
	handlerErr := fmt.Errorf("%w: 5000000 bytes, limit 4193280", ErrTooLarge)
	remote := &transport.RemoteError{Peer: "n1", Message: handlerErr.Error(), Temporary: transport.IsRetryable(handlerErr)}
	got := Decode(fmt.Errorf("call: %w", remote))
	if !errors.Is(got, ErrTooLarge) {
		t.Fatalf("%q decoded to %v, want code %d", remote.Message, got, CodeTooLarge)
	}
	if transport.IsRetryable(got) || transport.IsRetryable(handlerErr) {
		t.Fatal("a write too large to replicate is retryable: the same write would be refused again")
	}
}
