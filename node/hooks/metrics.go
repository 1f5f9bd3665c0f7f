package hooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dropped  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_hook_calls_total",
			Help: "Hook and webhook requests by hook and result (ok, error, busy: no free concurrency slot in time).",
		}, []string{"hook", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imnode_hook_duration_seconds",
			Help:    "Latency of hook and webhook requests by hook.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 8},
		}, []string{"hook"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imnode_hook_dropped_total",
			Help: "Notifications dropped because the app's hook queue was full.",
		}, []string{"hook"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.duration, m.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(hook, result string, start, end time.Time) {
	m.calls.WithLabelValues(hook, result).Inc()
	m.duration.WithLabelValues(hook).Observe(end.Sub(start).Seconds())
}
