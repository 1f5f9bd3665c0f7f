package route

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// TestRouteRetryRules: any command is retried only after failures that
// prove it did not run; an idempotent one also after a lost answer or a
// failed write quorum (resolved before the shard serves again), never after
// an answer.
func TestRouteRetryRules(t *testing.T) {
	remote := func(err error) error {
		return wire.Decode(&transport.RemoteError{Peer: "n1", Message: err.Error(), Temporary: transport.IsRetryable(err)})
	}
	for _, tt := range []struct {
		name              string
		err               error
		retry, idempotent bool
	}{
		{"not ready here", wire.ErrNotReady, true, true},
		{"not ready there", remote(wire.Wrap(wire.ErrNotReady, errors.New("lease ran out"))), true, true},
		{"no coordinator", wire.ErrNoCoordinator, true, true},
		{"epoch changing", &transport.EpochMismatchError{Peer: "n1", Sent: 1, Remote: 2}, true, true},
		{"peer unavailable", transport.ErrUnavailable, true, true},
		{"connection lost", fmt.Errorf("call: %w", transport.ErrConnectionLost), false, true},
		{"timeout", transport.ErrTimeout, false, true},
		{"deadline", context.DeadlineExceeded, false, true},
		{"coordinator could not proxy", remote(transport.Retry(transport.ErrConnectionLost)), false, true},
		{"quorum failed", remote(wire.Wrap(wire.ErrQuorum, errors.New("1 of 2"))), false, true},
		{"quorum failed here", fmt.Errorf("conversation: commit: %w", wire.ErrQuorum), false, true},
		{"protocol error", protocol.ErrConversationNotFound, false, false},
		{"internal failure", errors.New("disk on fire"), false, false},
	} {
		if got := notExecuted(tt.err); got != tt.retry {
			t.Errorf("%s: retried %v, want %v", tt.name, got, tt.retry)
		}
		if got := mayRetryIdempotent(tt.err); got != tt.idempotent {
			t.Errorf("%s: idempotent retried %v, want %v", tt.name, got, tt.idempotent)
		}
	}
}

// TestRouteRetryBudget: a command waits for a coordinator until shortly
// before its caller's deadline (the gateway's request timeout, below the
// SDK's), not merely two request timeouts: a lease that takes longer to
// move is a pause, not a 4200. Without a deadline the budget is two
// request timeouts.
func TestRouteRetryBudget(t *testing.T) {
	now := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(15*time.Second))
	defer cancel()
	if got, want := retryDeadline(ctx, now, 2*time.Second), now.Add(15*time.Second-answerMargin); !got.Equal(want) {
		t.Errorf("budget under a 15 s deadline ends %v after the start, want %v", got.Sub(now), want.Sub(now))
	}
	if got, want := retryDeadline(context.Background(), now, 2*time.Second), now.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("budget without a deadline ends %v after the start, want %v", got.Sub(now), want.Sub(now))
	}
}
