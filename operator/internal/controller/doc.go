// Package controller reconciles IMCluster objects into a StatefulSet of chat
// nodes and its Services, ConfigMap, PodDisruptionBudget and ServiceMonitor,
// and drives scale and rolling changes through the nodes' admin API
// (node/adminapi), one step per reconcile.
//
// Every pass observes the world again: the StatefulSet, the pods and the nodes'
// own reports. Nothing is carried in memory between passes, so an operator
// restart resumes any operation where the data plane is. The package must not
// take a step whose safety it cannot observe: an admin API that does not
// answer blocks the step and is reported as Degraded.
package controller
