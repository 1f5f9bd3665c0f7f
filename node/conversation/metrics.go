package conversation

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// metrics are the engine's Prometheus collectors. Labels never carry user or
// conversation ids.
type metrics struct {
	commands *prometheus.CounterVec   // by command and result
	duration *prometheus.HistogramVec // by command
	messages *prometheus.CounterVec   // by kind: stored, transient
	pushes   prometheus.Counter       // recipients of Deliver calls
	swept    *prometheus.CounterVec   // by what: messages, conversations, notifications
	// pushQueued counts offline push entries written; offlinePushes their
	// outcomes (sent, retry, failed, skipped, expired).
	pushQueued    prometheus.Counter
	offlinePushes *prometheus.CounterVec
	// outbox counts outbox entries by result (applied, failed, deferred).
	outbox *prometheus.CounterVec
	// byCmd caches each command type and op's series (forCommand).
	byCmd [cmdSlots * (opSlots + 1)]atomic.Pointer[cmdMetrics]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_conversation_commands_total",
			Help: "Commands handled by the conversation engine, by command and result (ok, client_error, internal_error).",
		}, []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imnode_conversation_command_duration_seconds",
			Help:    "Time to execute a command, including the durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"command"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_conversation_messages_total",
			Help: "Messages accepted, by kind (stored, transient).",
		}, []string{"kind"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_conversation_pushes_total",
			Help: "Clients addressed by pushes handed to the deliverer.",
		}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_conversation_swept_total",
			Help: "Records removed by the retention sweeper, by kind (messages, conversations, notifications, dedup).",
		}, []string{"kind"}),
		pushQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_push_queued_total",
			Help: "Offline push entries written with their message (some recipient was offline).",
		}),
		offlinePushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_push_results_total",
			Help: "Offline push attempts by result (sent, retry, failed after the last retry, skipped, expired).",
		}, []string{"result"}),
		outbox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_conversation_outbox_total",
			Help: "Effects of commands in other shards: entries applied, apply attempts failed (retried by the drainer), conversations deferred to the drainer because every runner was busy.",
		}, []string{"result"}),
	}
	for _, r := range []string{"applied", "failed", "deferred"} {
		m.outbox.WithLabelValues(r)
	}
	// Every kind exists from the start, so "flat for days" alerts see 0
	// rather than no series before the first sweep.
	for _, kind := range []string{"messages", "conversations", "dedup", "notifications"} {
		m.swept.WithLabelValues(kind)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.commands, m.duration, m.messages, m.pushes, m.swept, m.pushQueued, m.offlinePushes, m.outbox} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Results of a command, the values of imnode_conversation_commands_total's
// result label.
const (
	resultOK = iota
	resultClientError
	resultInternalError
	resultCount
)

var resultNames = [resultCount]string{"ok", "client_error", "internal_error"}

// Slots of the per-command series cache (metrics.byCmd): every command type
// (the largest is below cmdSlots) with no op or with an op below opSlots.
// A command outside them is looked up each time.
const (
	cmdSlots = 32
	opSlots  = 256
)

// cmdMetrics are one command name's series: its duration and, created at
// its first command with that result as the vector's WithLabelValues
// would, its count per result.
type cmdMetrics struct {
	name     string
	duration prometheus.Observer
	results  [resultCount]atomic.Pointer[prometheus.Counter]
}

// forCommand returns the series of req's command name (commandName), from
// the cache after the first command of its type and op, so a command costs
// no string building and no label lookup (a hash and a lock in each
// vector).
func (m *metrics) forCommand(req *pb.GenericCommand) *cmdMetrics {
	cmd, op := int(req.GetCmd()), 0
	if req.Op != nil {
		op = int(req.GetOp()) + 1
	}
	if cmd < 0 || cmd >= cmdSlots || op < 0 || op > opSlots {
		return m.newCmdMetrics(commandName(req))
	}
	slot := &m.byCmd[cmd*(opSlots+1)+op]
	if cm := slot.Load(); cm != nil {
		return cm
	}
	cm := m.newCmdMetrics(commandName(req))
	if !slot.CompareAndSwap(nil, cm) {
		return slot.Load()
	}
	return cm
}

func (m *metrics) newCmdMetrics(name string) *cmdMetrics {
	return &cmdMetrics{name: name, duration: m.duration.WithLabelValues(name)}
}

// observe counts one command with its result and duration.
func (cm *cmdMetrics) observe(m *metrics, start, end time.Time, err error) {
	result := resultOK
	var pe *protocol.Error
	switch {
	case err == nil:
	case errors.As(err, &pe):
		result = resultClientError
	default:
		result = resultInternalError
	}
	c := cm.results[result].Load()
	if c == nil {
		counter := m.commands.WithLabelValues(cm.name, resultNames[result])
		c = &counter
		cm.results[result].Store(c)
	}
	(*c).Inc()
	cm.duration.Observe(end.Sub(start).Seconds())
}
