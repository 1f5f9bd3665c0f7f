package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/imcluster/imcluster/node/transport"
)

// Code identifies a peer handler error across the wire. The numbers are on
// the wire: never renumber, only append.
type Code uint16

// Codes of the errors peers answer with.
const (
	CodeNotReady      Code = 1 // this node is not (yet) the shard's coordinator
	CodeNoCoordinator Code = 2 // no replica of the shard can coordinate
	CodeQuorum        Code = 3 // fewer than W replicas acknowledged a write
	CodeNotHolder     Code = 4 // the sender does not hold the shard's lease here
	CodeNotStarted    Code = 5 // the node is still starting
	CodeTooLarge      Code = 6 // a write does not fit the peer transport's frame limit
	CodeDiskLow       Code = 7 // the node's disk is below its reserve: it stores no new write
)

// Error is a peer handler error with a code. The transport carries handler
// errors as text, so Error writes its code as a "[code N]" token in front
// of its text and Decode turns the token back into the sentinel of the
// code: callers match with errors.Is, never on the text.
type Error struct {
	Code Code
	Text string
	// Temporary marks the error retryable (transport.IsRetryable).
	Temporary bool
}

func (e *Error) Error() string { return "[code " + strconv.Itoa(int(e.Code)) + "] " + e.Text }

// Retryable reports e.Temporary.
func (e *Error) Retryable() bool { return e.Temporary }

// The sentinels of the codes. All but ErrTooLarge and ErrDiskLow are
// retryable: the client's SDK retries or the user resends.
var (
	ErrNotReady      = &Error{Code: CodeNotReady, Text: "cluster: replica not caught up or not coordinating", Temporary: true}
	ErrNoCoordinator = &Error{Code: CodeNoCoordinator, Text: "cluster: no live replica can coordinate the shard", Temporary: true}
	ErrQuorum        = &Error{Code: CodeQuorum, Text: "cluster: write quorum not reached", Temporary: true}
	ErrNotHolder     = &Error{Code: CodeNotHolder, Text: "cluster: sender does not hold the shard's lease", Temporary: true}
	ErrNotStarted    = &Error{Code: CodeNotStarted, Text: "cluster: still starting (waiting for a seed or catching up); retry", Temporary: true}
	// ErrTooLarge is not retryable: the same write is refused again.
	ErrTooLarge = &Error{Code: CodeTooLarge, Text: "cluster: write too large to replicate"}
	// ErrDiskLow is not retryable at once: the node refuses new writes
	// until an operator frees space (store.ErrDiskLow). A coordinator
	// counts a replica's refusal as a failed replica.
	ErrDiskLow = &Error{Code: CodeDiskLow, Text: "cluster: the node's storage is full (disk below its reserve), writes refused"}
)

var byCode = map[Code]*Error{
	CodeNotReady: ErrNotReady, CodeNoCoordinator: ErrNoCoordinator, CodeQuorum: ErrQuorum,
	CodeNotHolder: ErrNotHolder, CodeNotStarted: ErrNotStarted, CodeTooLarge: ErrTooLarge, CodeDiskLow: ErrDiskLow,
}

// codedError is a remote error whose code is known: errors.Is matches both
// the transport's RemoteError and the code's sentinel.
type codedError struct {
	remote   *transport.RemoteError
	sentinel *Error
}

func (e *codedError) Error() string   { return e.remote.Error() }
func (e *codedError) Unwrap() []error { return []error{e.remote, e.sentinel} }
func (e *codedError) Retryable() bool { return e.remote.Retryable() }

// Decode returns err with the code of a peer's handler error attached, so
// errors.Is(Decode(err), ErrNotReady) holds for a peer's "not ready". Other
// errors pass unchanged.
func Decode(err error) error {
	var re *transport.RemoteError
	if err == nil || !errors.As(err, &re) {
		return err
	}
	code, ok := parseCode(re.Message)
	if !ok {
		return err
	}
	s, ok := byCode[code]
	if !ok {
		return err
	}
	return &codedError{remote: re, sentinel: s}
}

// parseCode finds the "[code N]" token a handler error's text starts with,
// or that a wrapping error put further in.
func parseCode(msg string) (Code, bool) {
	_, rest, found := strings.Cut(msg, "[code ")
	if !found {
		return 0, false
	}
	j := strings.IndexByte(rest, ']')
	if j <= 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:j], 10, 16)
	if err != nil {
		return 0, false
	}
	return Code(n), true
}

// Wrap returns an error that matches sentinel (errors.Is) and carries its
// code on the wire, with err's text after it.
func Wrap(sentinel *Error, err error) error { return fmt.Errorf("%w: %w", sentinel, err) }
