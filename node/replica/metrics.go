package replica

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	writeSeconds    prometheus.Histogram
	replicated      prometheus.Counter
	replicateErrors prometheus.Counter
	quorumFailures  prometheus.Counter
	syncKeys        prometheus.Counter
	syncRuns        *prometheus.CounterVec
	catchUps        *prometheus.CounterVec
	syncPending     prometheus.Gauge
	// syncKeysRemaining and syncBytesRemaining estimate what the shards
	// still catching up have left to copy.
	syncKeysRemaining  prometheus.Gauge
	syncBytesRemaining prometheus.Gauge
	syncBuckets        prometheus.Counter
	underReplicated    prometheus.Gauge
	leasesAcquired     prometheus.Counter
	leasesHeld         prometheus.Gauge
	replicaRefused     prometheus.Counter
	stepDowns          prometheus.Counter
	rolledForward      prometheus.Counter
	noticesDropped     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "imnode_replica_write_seconds",
			Help: "Time from a coordinated write to its write quorum.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		replicated: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_ops_applied_total",
			Help: "Replicated write operations applied as a replica."}),
		replicateErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_replicate_errors_total",
			Help: "Replication requests to other replicas that failed (repaired by anti-entropy)."}),
		quorumFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_write_quorum_failures_total",
			Help: "Writes that fewer than W replicas acknowledged (the client got a retryable error)."}),
		syncKeys: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_sync_keys_total",
			Help: "Keys received by shard syncs (catch-up, rebalancing, repair)."}),
		syncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imnode_replica_sync_runs_total",
			Help: "Shard syncs by reason and result."}, []string{"reason", "result"}),
		catchUps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "imnode_replica_catchups_total",
			Help: "Catch-ups of a shard from one source, by method: changes (the keys the source logged since this node's cursor) or digest (range digests compared, differing buckets copied)."}, []string{"method"}),
		syncPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_replica_sync_shards_pending",
			Help: "Shards this node replicates but has not caught up yet."}),
		syncKeysRemaining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_replica_sync_keys_remaining",
			Help: "Estimated keys still to copy to the shards this node is catching up (shards of unknown size not counted)."}),
		syncBytesRemaining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_replica_sync_bytes_remaining",
			Help: "Estimated bytes (keys and values) still to copy to the shards this node is catching up (shards of unknown size not counted)."}),
		syncBuckets: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_sync_buckets_total",
			Help: "Digest buckets (1/64 of a shard each) found differing from another replica and copied, by catch-up and anti-entropy."}),
		underReplicated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_replica_under_replicated_shards",
			Help: "Shards with a replica down or still catching up, as this node sees them."}),
		leasesAcquired: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_leases_acquired_total",
			Help: "Coordinator leases this node acquired afresh (not renewals)."}),
		leasesHeld: prometheus.NewGauge(prometheus.GaugeOpts{Name: "imnode_replica_leases_held",
			Help: "Shards whose coordinator lease this node holds."}),
		stepDowns: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_step_downs_total",
			Help: "Leases given up after a write whose outcome was unknown (quorum failed, timed out, lease moved); the next holder resolves the shard."}),
		rolledForward: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_writes_rolled_forward_total",
			Help: "Pending writes of the previous term a takeover made visible on W replicas (they may have been acknowledged)."}),
		noticesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_commit_notices_dropped_total",
			Help: "Commit notices not sent or not queued (full); the write stays pending there until the next resolution."}),
		replicaRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_replica_replicate_refused_total",
			Help: "Replicated writes refused because the sender does not hold the shard's lease here."}),
	}
	// Every reason, result and method exists from the start (0 rather than absent).
	m.catchUps.WithLabelValues("changes")
	m.catchUps.WithLabelValues("digest")
	for _, reason := range []string{"catchup", "repair", "release"} {
		for _, result := range []string{"ok", "error"} {
			m.syncRuns.WithLabelValues(reason, result)
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.writeSeconds, m.replicated, m.replicateErrors, m.quorumFailures,
			m.syncKeys, m.syncRuns, m.catchUps, m.syncPending, m.syncKeysRemaining, m.syncBytesRemaining, m.syncBuckets,
			m.underReplicated, m.leasesAcquired, m.leasesHeld, m.replicaRefused,
			m.stepDowns, m.rolledForward, m.noticesDropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
