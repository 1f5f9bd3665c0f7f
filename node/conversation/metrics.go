package conversation

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/protocol"
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

func (m *metrics) observe(cmd string, start, end time.Time, err error) {
	result := "ok"
	var pe *protocol.Error
	switch {
	case err == nil:
	case errors.As(err, &pe):
		result = "client_error"
	default:
		result = "internal_error"
	}
	m.commands.WithLabelValues(cmd, result).Inc()
	m.duration.WithLabelValues(cmd).Observe(end.Sub(start).Seconds())
}
