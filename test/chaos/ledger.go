package chaos

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
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

// Causes of failed attempts: what a client-visible error is attributed to.
// CauseCoordinator and CauseNoAnswer fail the run (Failover is a pause, not
// an error: while a lease moves the cluster waits and retries inside the
// SDK's command timeout); the others are counted and allowed.
const (
	// CauseCoordinator: a retryable server answer saying the cluster could
	// not serve the conversation (no coordinator, lease moving, write
	// quorum not reached, coordinator silent, the node's own budget ran
	// out).
	CauseCoordinator = "coordinator-loss"
	// CauseNoAnswer: no answer within the SDK's command timeout on a
	// socket that stayed up.
	CauseNoAnswer = "no-answer"
	// CauseGateway: the sender's own node went away (socket dropped,
	// session closed, the node shutting down, no node to dial).
	CauseGateway = "gateway-loss"
	// CauseServer: another retryable server error (an internal failure,
	// a quota).
	CauseServer = "server-error"
	// CauseRejected: a permanent server error (fails the run).
	CauseRejected = "rejected"
)

// coordinatorDetails are the details of the 4200 answers that say the
// cluster could not reach or keep a coordinator for the conversation
// (node/protocol names them; "request timed out" is the gateway's answer
// when a command used up its whole budget).
var coordinatorDetails = []string{
	protocol.DetailNoCoordinator, protocol.DetailQuorum, protocol.DetailCoordinatorSilent, "request timed out",
}

// shutdownDetail is the gateway's answer to a command cut short by its own
// shutdown (a drained node stopping): a loss of the gateway, like a
// dropped socket.
const shutdownDetail = "node shutting down"

// Cause attributes a failed attempt (one of the Cause constants).
func Cause(err error) string {
	se, server := errors.AsType[*client.Error](err)
	switch class := Classify(err); {
	case server && strings.HasPrefix(class, ErrClassRejected):
		return CauseRejected
	case server && se.Code == protocol.ErrUnavailable.Code && slices.Contains(coordinatorDetails, se.Detail):
		return CauseCoordinator
	case server && se.Detail == shutdownDetail:
		return CauseGateway
	case server:
		return CauseServer
	case class == ErrClassTimeout:
		return CauseNoAnswer
	default:
		return CauseGateway
	}
}

// Failing reports whether errors of cause fail a run.
func Failing(cause string) bool {
	return cause == CauseCoordinator || cause == CauseNoAnswer || cause == CauseRejected
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
	groups    map[groupKey]*ErrorGroup
	// nodes names the node of each client URL; fault is the fault in
	// progress ("" between faults) and faultAt when it started (when the
	// last one ended, between faults); last is the last fault that ended.
	nodes   map[string]string
	fault   string
	faultAt time.Time
	last    pastFault
}

// pastFault is a fault that ended.
type pastFault struct {
	name       string
	start, end time.Time
}

// ErrorEvent is one failed send attempt, for explaining stalls.
type ErrorEvent struct {
	At     time.Time
	Sender string
	// Via is the URL of the node the sender was connected to; Node its id
	// ("" if unknown).
	Via  string
	Node string
	// Command is what the sender tried ("direct", "login").
	Command string
	Class   string
	Cause   string
	// Code, Reason and Detail are the server's answer (zero for errors that
	// are not one).
	Code           int32
	Reason, Detail string
	// Fault is the fault in progress when the attempt started or failed
	// ("kill+restart imnode-1"), or BetweenFaults; SinceFault the time from
	// its start to the failure (between faults: since the last one ended,
	// or the load started). Took is how long the attempt ran.
	Fault      string
	SinceFault time.Duration
	Took       time.Duration
	Err        string
}

// BetweenFaults is ErrorEvent.Fault for errors while no fault was active.
const BetweenFaults = "between faults"

// ErrorGroup counts the failed attempts that share cause, answer, node,
// command and fault.
type ErrorGroup struct {
	Cause, Class   string
	Code           int32
	Reason, Detail string
	Node, Command  string
	Fault          string
	Count          int
	// First is the first such error; MinSince and MaxSince bound their
	// times since the fault (ErrorEvent.SinceFault); MaxTook is the
	// longest attempt among them.
	First              time.Time
	MinSince, MaxSince time.Duration
	MaxTook            time.Duration
}

type groupKey struct {
	cause, class, reason, detail, node, command, fault string
	code                                               int32
}

// maxTimeline bounds the error timeline: enough for a stall of a minute
// with every sender retrying about once a second, a few hundred kB.
const maxTimeline = 4096

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{errs: map[string]int{}, samples: map[string]string{}, events: map[string]int{},
		groups: map[groupKey]*ErrorGroup{}, nodes: map[string]string{}, faultAt: time.Now()}
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

// NameNodes adds client URLs and the ids of their nodes (a restarted node
// listens on new ports: its new URL is added, the old one kept).
func (l *Ledger) NameNodes(byURL map[string]string) {
	l.mu.Lock()
	maps.Copy(l.nodes, byURL)
	l.mu.Unlock()
}

// FaultStarted records that fault (kind and node) is now in progress.
func (l *Ledger) FaultStarted(fault string) {
	l.mu.Lock()
	l.fault, l.faultAt = fault, time.Now()
	l.mu.Unlock()
}

// FaultEnded records that the fault in progress is over.
func (l *Ledger) FaultEnded() {
	l.mu.Lock()
	now := time.Now()
	l.last = pastFault{name: l.fault, start: l.faultAt, end: now}
	l.fault, l.faultAt = "", now
	l.mu.Unlock()
}

// Failed records a failed attempt of command by sender (connected via the
// node at URL via) that started at started, and returns its class.
func (l *Ledger) Failed(err error, sender, via, command string, started time.Time) string {
	now := time.Now()
	e := ErrorEvent{At: now, Sender: sender, Via: via, Command: command, Class: Classify(err), Cause: Cause(err),
		Took: now.Sub(started), Err: err.Error()}
	if se, ok := errors.AsType[*client.Error](err); ok {
		e.Code, e.Reason, e.Detail = se.Code, se.Reason, se.Detail
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Node = l.nodes[via]
	switch {
	case l.fault != "":
		e.Fault, e.SinceFault = l.fault, now.Sub(l.faultAt)
	case l.last.name != "" && started.Before(l.last.end):
		// The fault ended while the attempt ran: it is the fault's.
		e.Fault, e.SinceFault = l.last.name, now.Sub(l.last.start)
	default:
		e.Fault, e.SinceFault = BetweenFaults, now.Sub(l.faultAt)
	}
	if len(l.timeline) == maxTimeline {
		l.timeline = append(l.timeline[:0], l.timeline[maxTimeline/2:]...)
	}
	l.timeline = append(l.timeline, e)
	l.errs[e.Class]++
	if _, ok := l.samples[e.Class]; !ok {
		l.samples[e.Class] = e.Err
	}
	k := groupKey{cause: e.Cause, class: e.Class, reason: e.Reason, detail: e.Detail, node: e.Node, command: command, fault: e.Fault, code: e.Code}
	g := l.groups[k]
	if g == nil {
		g = &ErrorGroup{Cause: e.Cause, Class: e.Class, Code: e.Code, Reason: e.Reason, Detail: e.Detail, Node: e.Node,
			Command: command, Fault: e.Fault, First: now, MinSince: e.SinceFault, MaxSince: e.SinceFault}
		l.groups[k] = g
	}
	g.Count++
	g.MinSince, g.MaxSince = min(g.MinSince, e.SinceFault), max(g.MaxSince, e.SinceFault)
	g.MaxTook = max(g.MaxTook, e.Took)
	return e.Class
}

// ErrorGroups returns the failed attempts grouped, failing causes first,
// then by count.
func (l *Ledger) ErrorGroups() []ErrorGroup {
	l.mu.Lock()
	out := make([]ErrorGroup, 0, len(l.groups))
	for _, g := range l.groups {
		out = append(out, *g)
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b ErrorGroup) int {
		if fa, fb := Failing(a.Cause), Failing(b.Cause); fa != fb {
			if fa {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Cause, b.Cause); c != 0 {
			return c
		}
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return a.First.Compare(b.First)
	})
	return out
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
