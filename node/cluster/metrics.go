package cluster

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	epoch       prometheus.Gauge
	badMessages prometheus.Counter
	asyncDrops  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_cluster_roster_epoch",
			Help: "Roster epoch this node has converged to."}),
		badMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_cluster_peer_bad_messages_total",
			Help: "Undecodable peer messages dropped."}),
		asyncDrops: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_cluster_async_drops_total",
			Help: "Background cluster tasks dropped because their queue was full."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.epoch, m.badMessages, m.asyncDrops} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
