package chaos

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

// Ack is one message the server acknowledged to a sender.
type Ack struct {
	// Conv is the conversation id.
	Conv string
	// ID and Timestamp (Unix milliseconds) are what the ack carried.
	ID        string
	Timestamp int64
	// Payload is the message content, unique per sent message (it is also
	// the dedup token, so a retried send must not store it twice).
	Payload string
	// FirstSent is when the first attempt to send Payload started; Acked is
	// when the ack arrived. Any message whose first attempt started after
	// Acked must get a later timestamp in the same conversation.
	FirstSent time.Time
	Acked     time.Time
	// Via is the WebSocket URL of the node the sender was connected to.
	Via string
}

// Error classes counted by the ledger. Retryable ones are expected while the
// cluster changes; rejected ones are server errors a client must not retry,
// which a healthy conversation never produces.
const (
	// ErrClassTimeout: the attempt got no answer within the send timeout.
	ErrClassTimeout = "timeout"
	// ErrClassConnection: the socket was down or dropped with the request
	// in flight (client.ErrNotConnected, client.ErrConnectionLost).
	ErrClassConnection = "connection"
	// ErrClassClosed: the session was closed (for example a re-login was
	// refused during a fault) and the sender dialed a new connection.
	ErrClassClosed = "session-closed"
	// ErrClassRetryable: a server error the protocol marks temporary
	// (4200 and friends); the suffix is the code.
	ErrClassRetryable = "retryable"
	// ErrClassRejected: a server error the protocol marks permanent.
	ErrClassRejected = "rejected"
	// ErrClassOther: anything else (dial failures, unexpected frames).
	ErrClassOther = "other"
)

// temporaryErrors are the protocol's errors a client may retry unchanged.
var temporaryErrors = []*protocol.Error{
	protocol.ErrInternal, protocol.ErrConversationInternal,
	protocol.ErrConversationAPIFailed, protocol.ErrMessageSentQuotaExceeded,
}

// Classify names the class of a failed send attempt (one of the ErrClass
// constants, server errors with their code appended: "retryable 4200").
func Classify(err error) string {
	var se *client.Error
	switch {
	case errors.As(err, &se):
		for _, t := range temporaryErrors {
			if t.Code == se.Code {
				return ErrClassRetryable + " " + strconv.Itoa(int(se.Code))
			}
		}
		return ErrClassRejected + " " + strconv.Itoa(int(se.Code)) + " " + se.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return ErrClassTimeout
	case errors.Is(err, client.ErrNotConnected), errors.Is(err, client.ErrConnectionLost):
		return ErrClassConnection
	case errors.Is(err, client.ErrClosed):
		return ErrClassClosed
	default:
		return ErrClassOther
	}
}

// Ledger records what the senders saw. It is safe for concurrent use; one
// mutex guards everything.
type Ledger struct {
	mu        sync.Mutex
	acks      []Ack
	attempts  int
	errs      map[string]int
	samples   map[string]string // first error text per class, for reports
	abandoned int               // payloads never acknowledged (run ended or rejected)
	events    map[string]int    // connection events by kind (disconnect, goaway, ...)
	timeline  []ErrorEvent      // the latest failed attempts, at most maxTimeline
}

// ErrorEvent is one failed send attempt, for explaining stalls.
type ErrorEvent struct {
	At     time.Time
	Sender string
	// Via is the URL of the node the sender was connected to.
	Via   string
	Class string
	Err   string
}

// maxTimeline bounds the error timeline: enough for a stall of a minute
// with every sender retrying about once a second, a few hundred kB.
const maxTimeline = 4096

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{errs: map[string]int{}, samples: map[string]string{}, events: map[string]int{}}
}

// Attempt counts one send attempt.
func (l *Ledger) Attempt() {
	l.mu.Lock()
	l.attempts++
	l.mu.Unlock()
}

// Acked records an acknowledged message.
func (l *Ledger) Acked(a Ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

// Failed records a failed attempt of sender (connected via the node at
// URL via) and returns its class.
func (l *Ledger) Failed(err error, sender, via string) string {
	c := Classify(err)
	l.mu.Lock()
	if len(l.timeline) == maxTimeline {
		l.timeline = append(l.timeline[:0], l.timeline[maxTimeline/2:]...)
	}
	l.timeline = append(l.timeline, ErrorEvent{At: time.Now(), Sender: sender, Via: via, Class: c, Err: err.Error()})
	l.errs[c]++
	if _, ok := l.samples[c]; !ok {
		l.samples[c] = err.Error()
	}
	l.mu.Unlock()
	return c
}

// Abandoned counts a payload the sender gave up on when the run ended; the
// server may or may not have stored it.
func (l *Ledger) Abandoned() {
	l.mu.Lock()
	l.abandoned++
	l.mu.Unlock()
}

// Acks returns a copy of the acknowledged messages.
func (l *Ledger) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acks)
}

// Errors returns a copy of the failed attempts by class.
func (l *Ledger) Errors() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.errs)
}

// ErrorSamples returns the first error text seen per class.
func (l *Ledger) ErrorSamples() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.samples)
}

// Counts returns the number of attempts, acknowledged messages and
// abandoned payloads.
func (l *Ledger) Counts() (attempts, acked, abandoned int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts, len(l.acks), l.abandoned
}

// AckCount returns the number of acknowledged messages so far.
func (l *Ledger) AckCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// Event counts a connection event of a sender (see Load).
func (l *Ledger) Event(kind string) {
	l.mu.Lock()
	l.events[kind]++
	l.mu.Unlock()
}

// Events returns a copy of the connection events by kind.
func (l *Ledger) Events() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.events)
}

// MaxAckGap returns the longest time between two consecutive acks (by
// arrival) and when it began: how long the load as a whole was stalled.
func MaxAckGap(acks []Ack) (gap time.Duration, from time.Time) {
	times := make([]time.Time, 0, len(acks))
	for _, a := range acks {
		times = append(times, a.Acked)
	}
	slices.SortFunc(times, time.Time.Compare)
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d > gap {
			gap, from = d, times[i-1]
		}
	}
	return gap, from
}

// ErrorsBetween returns the recorded failed attempts in [from, to].
func (l *Ledger) ErrorsBetween(from, to time.Time) []ErrorEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ErrorEvent
	for _, e := range l.timeline {
		if !e.At.Before(from) && !e.At.After(to) {
			out = append(out, e)
		}
	}
	return out
}
