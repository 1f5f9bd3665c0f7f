package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// Explicit formation (docs/operator.md, "Formation"): a brand-new cluster's
// first pod bootstraps it, once; every other start joins. The pod template
// never changes for it: every pod reads IMNODE_BOOTSTRAP_NODE from the
// formation ConfigMap (optional key), which names the first pod only while
// the cluster has never formed, and IMNODE_CLUSTER_ID, the IMCluster's UID.
const (
	// ConditionFormed records that the cluster formed: True once its first
	// node was ready (or the StatefulSet predates this condition). While
	// False (reason Bootstrapping) the formation ConfigMap names the pod
	// that bootstraps.
	ConditionFormed = "Formed"
	// formationKey is the formation ConfigMap's key read into
	// IMNODE_BOOTSTRAP_NODE.
	formationKey = "bootstrapNode"
)

func formationConfigMapName(c *imv1.IMCluster) string { return c.Name + "-formation" }

// formationEnv is the pods' environment for formation.
func formationEnv(c *imv1.IMCluster) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "IMNODE_CLUSTER_ID", Value: string(c.UID)},
		{Name: "IMNODE_BOOTSTRAP_NODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: formationConfigMapName(c)},
			Key:                  formationKey, Optional: ptr.To(true),
		}}},
	}
}

// reconcileFormation decides whether the cluster has formed and keeps the
// formation ConfigMap in step: the first pod's name while bootstrapping,
// empty afterwards (so a first pod that comes back with an empty volume
// joins instead of forming a second cluster). It runs after observe and
// before the StatefulSet exists.
func (r *IMClusterReconciler) reconcileFormation(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	cur := meta.FindStatusCondition(c.Status.Conditions, ConditionFormed)
	formed := metav1.Condition{Type: ConditionFormed, Status: metav1.ConditionTrue}
	switch {
	case cur != nil && cur.Status == metav1.ConditionTrue:
		formed.Reason, formed.Message = cur.Reason, cur.Message
	case s.sts != nil && cur == nil && len(c.Status.Conditions) > 0:
		// Reconciled before by an operator without formation.
		formed.Reason, formed.Message = "Existing", "The cluster predates explicit formation: every node joins"
	case s.sts != nil && s.pods[0] != nil && podReady(s.pods[0]):
		formed.Reason, formed.Message = "FirstNodeReady", fmt.Sprintf("%s bootstrapped the cluster", podName(c, 0))
		r.event(c, corev1.EventTypeNormal, "Formed", "Bootstrap", "%s bootstrapped the cluster; later starts join", podName(c, 0))
	default:
		formed.Status, formed.Reason = metav1.ConditionFalse, "Bootstrapping"
		formed.Message = fmt.Sprintf("%s bootstraps the cluster (cluster id %s)", podName(c, 0), c.UID)
	}
	setCondition(c, formed)
	bootstrap := ""
	if formed.Status != metav1.ConditionTrue {
		bootstrap = podName(c, 0)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: formationConfigMapName(c), Namespace: c.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, cm, func() error {
		cm.Labels = mergeLabels(cm.Labels, commonLabels(c))
		cm.Data = map[string]string{}
		if bootstrap != "" {
			cm.Data[formationKey] = bootstrap
		}
		return controllerutil.SetControllerReference(c, cm, r.Scheme())
	})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile formation configmap: %w", err)
	}
	return ctrl.Result{}, nil
}
