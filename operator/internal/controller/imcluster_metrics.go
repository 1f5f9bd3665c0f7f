package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// operationStarted is the start of each cluster's current operation
// (status.currentOperation.startedAt) as a Unix time; a cluster without one
// has no series. The IMDrainStuck alert (config/prometheus/rules.yaml) ages
// it with time(). One series per cluster at most: the labels are the
// IMCluster's namespace and name and the operation type.
var operationStarted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "imcluster_operator_operation_started_timestamp_seconds",
	Help: "Unix time the current operation of an IMCluster (status.currentOperation) started; absent while none is in flight.",
}, []string{"namespace", "name", "type"})

func init() { metrics.Registry.MustRegister(operationStarted) }

// recordOperation exports c's current operation, or removes its series.
func recordOperation(c *imv1.IMCluster) {
	operationStarted.DeletePartialMatch(prometheus.Labels{"namespace": c.Namespace, "name": c.Name})
	if op := c.Status.CurrentOperation; op != nil && op.StartedAt != nil {
		operationStarted.WithLabelValues(c.Namespace, c.Name, string(op.Type)).Set(float64(op.StartedAt.Unix()))
	}
}

// forgetCluster removes the series of a deleted IMCluster.
func forgetCluster(namespace, name string) {
	operationStarted.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "name": name})
}
