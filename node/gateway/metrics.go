package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

type metrics struct {
	connections       prometheus.Gauge
	handshakeFailures prometheus.Counter
	badFrames         prometheus.Counter
	framesOut         prometheus.Counter
	writeBatches      prometheus.Counter
	pushes            prometheus.Counter
	slowDisconnects   prometheus.Counter
	floodDisconnects  prometheus.Counter
	idleDisconnects   prometheus.Counter
	panics            prometheus.Counter
	commands          *prometheus.CounterVec
	commandErrors     *prometheus.CounterVec
	commandSeconds    *prometheus.HistogramVec
	rateLimited       *prometheus.CounterVec
	oversizedFrames   prometheus.Counter
	// byCmd caches each command's series of commands and commandSeconds
	// (forCmd), indexed by command type, so a command costs no label
	// lookup (a hash and a lock in the vector).
	byCmd [cmdMetricSlots]atomic.Pointer[cmdMetrics]
}

// cmdMetricSlots covers every command type of the protocol (the largest
// is below 64); a command type beyond it is looked up each time.
const cmdMetricSlots = 64

// cmdMetrics are one command's series.
type cmdMetrics struct {
	count   prometheus.Counter
	seconds prometheus.Observer
}

// forCmd returns cmd's series, created (at zero) by its first command as
// the vectors' WithLabelValues would.
func (m *metrics) forCmd(cmd pb.CommandType) *cmdMetrics {
	i := int(cmd)
	cached := i >= 0 && i < cmdMetricSlots
	if cached {
		if cm := m.byCmd[i].Load(); cm != nil {
			return cm
		}
	}
	name := cmd.String()
	cm := &cmdMetrics{count: m.commands.WithLabelValues(name), seconds: m.commandSeconds.WithLabelValues(name)}
	if cached {
		m.byCmd[i].Store(cm)
	}
	return cm
}

func newMetrics(reg prometheus.Registerer, g *Gateway) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imnode_gateway_connections", Help: "Open client WebSocket connections.",
		}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_handshake_failures_total", Help: "WebSocket upgrades rejected.",
		}),
		badFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_malformed_frames_total", Help: "Client frames that could not be decoded.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_frames_written_total", Help: "Frames written to client sockets.",
		}),
		writeBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_write_batches_total", Help: "Batches of frames written to client sockets, one write system call each (up to 64 KiB); frames written / batches is the frames per write.",
		}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_pushes_total", Help: "Pushes queued to sessions.",
		}),
		slowDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_slow_disconnects_total", Help: "Connections closed because their outbound queue was full.",
		}),
		floodDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_flood_disconnects_total", Help: "Connections closed because their inbound command queue was full.",
		}),
		idleDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_idle_disconnects_total", Help: "Connections closed by the idle read timeout.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_handler_panics_total", Help: "Commands whose handler panicked (a bug; answered with 4200).",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_gateway_commands_total", Help: "Client commands executed, by command.",
		}, []string{"cmd"}),
		commandErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_gateway_command_errors_total", Help: "Client commands answered with an error, by command and code.",
		}, []string{"cmd", "code"}),
		commandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imnode_gateway_command_duration_seconds", Help: "Time to execute a client command, by command.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"cmd"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_gateway_rate_limited_total", Help: "Connections (kind=connection), logins (kind=login), conv/query commands of one session (kind=query), and messages (kind=send), history queries (kind=history) and other conversation operations (kind=op) of one client refused by a rate or concurrency limit.",
		}, []string{"kind"}),
		oversizedFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imnode_gateway_oversized_frames_total", Help: "Answers replaced by error 4109 and pushes dropped for exceeding the outgoing frame limit.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.handshakeFailures, m.badFrames, m.framesOut, m.writeBatches, m.pushes,
			m.slowDisconnects, m.floodDisconnects, m.idleDisconnects, m.panics, m.commands, m.commandErrors, m.commandSeconds, m.rateLimited, m.oversizedFrames,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "imnode_gateway_sessions", Help: "Logged-in sessions.",
			}, func() float64 { return float64(g.reg.size()) }))
	}
	return m
}
