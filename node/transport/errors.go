package transport

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Each is retryable (IsRetryable) unless noted: the caller
// may try another replica or the same peer again later.
var (
	// ErrQueueFull: the peer's send queue or pending-call table is full.
	ErrQueueFull = errors.New("transport: send queue full")
	// ErrUnavailable: the peer is unreachable and in reconnect backoff.
	ErrUnavailable = errors.New("transport: peer unavailable")
	// ErrConnectionLost: the connection broke while the call was pending;
	// the request may or may not have been executed.
	ErrConnectionLost = errors.New("transport: connection lost")
	// ErrTimeout: the call's deadline passed without a response; the
	// request may or may not have been executed.
	ErrTimeout = errors.New("transport: request timed out")
	// ErrShutdown: this transport (or the remote one) is shutting down.
	ErrShutdown = errors.New("transport: shut down")
	// ErrEpochMismatch matches every *EpochMismatchError.
	ErrEpochMismatch = errors.New("transport: epoch mismatch")
	// ErrWrongPeer: the address answered with another node id (not
	// retryable on the same address until the resolver changes).
	ErrWrongPeer = errors.New("transport: wrong peer")
)

// EpochMismatchError is returned by Call when the receiver's roster epoch
// differs from the one the request was stamped with. It is retryable: the
// node with the older epoch will converge through gossip, and the caller
// re-routes with its (then) current ring.
type EpochMismatchError struct {
	Peer   string
	Sent   uint64 // epoch the request carried
	Remote uint64 // receiver's epoch
}

func (e *EpochMismatchError) Error() string {
	return fmt.Sprintf("transport: epoch mismatch with %s: sent %d, peer has %d", e.Peer, e.Sent, e.Remote)
}

// Is makes errors.Is(err, ErrEpochMismatch) true.
func (e *EpochMismatchError) Is(target error) bool { return target == ErrEpochMismatch }

// Retryable reports true.
func (e *EpochMismatchError) Retryable() bool { return true }

// RemoteError is a handler error returned by the peer, carried as text.
type RemoteError struct {
	Peer    string
	Message string
	// Temporary is true when the handler marked the error retryable (see
	// Retry) or the peer was shutting down.
	Temporary bool
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("transport: peer %s: %s", e.Peer, e.Message)
}

// Retryable reports e.Temporary.
func (e *RemoteError) Retryable() bool { return e.Temporary }

// retryError marks a handler error as retryable; see Retry.
type retryError struct{ err error }

func (e retryError) Error() string   { return e.err.Error() }
func (e retryError) Unwrap() error   { return e.err }
func (e retryError) Retryable() bool { return true }

// Retry wraps a handler error so that the caller's RemoteError is
// retryable (e.g. "not coordinator yet", "catching up").
func Retry(err error) error { return retryError{err} }

// IsRetryable reports whether err (from Call or Send, or a handler error)
// says the operation may succeed if tried again, here or on another
// replica.
func IsRetryable(err error) bool {
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	for _, e := range []error{ErrQueueFull, ErrUnavailable, ErrConnectionLost, ErrTimeout, ErrShutdown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded)
}
