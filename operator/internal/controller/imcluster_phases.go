package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// scope is what one reconcile pass knows. It is rebuilt on every pass.
type scope struct {
	cluster *imv1.IMCluster
	before  *imv1.IMCluster
	// stop ends the pass after the current phase.
	stop bool

	token      string
	configHash string
	// creds are the cluster's credentials; status what status.security reports.
	creds  *credentials
	status imv1.SecurityStatus
	// version is spec.version, or the operator's own when that is empty.
	version  string
	template corev1.PodTemplateSpec

	// Observed.
	sts      *appsv1.StatefulSet
	pods     map[int32]*corev1.Pod
	nodes    map[int32]*adminapi.NodeStatus
	nodeErrs map[int32]error
	drains   map[int32]*adminapi.DrainStatus
	view     *adminapi.ClusterStatus

	// Outcome, turned into status by patchStatus.
	operation      *imv1.Operation
	progressing    string
	progressingMsg string
	degraded       []issue
}

// issue is one reason the cluster is Degraded.
type issue struct{ reason, message string }

func (s *scope) degrade(reason, format string, args ...any) {
	s.degraded = append(s.degraded, issue{reason: reason, message: fmt.Sprintf(format, args...)})
}

func (s *scope) progress(reason, format string, args ...any) {
	if s.progressing == "" {
		s.progressing, s.progressingMsg = reason, fmt.Sprintf(format, args...)
	}
}

func (r *IMClusterReconciler) reconcileAdminToken(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	name, key := adminTokenSecret(c)
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, secret)
	switch {
	case apierrors.IsNotFound(err) && c.Spec.AdminTokenSecretRef == nil:
		buf := make([]byte, 32)
		_, _ = rand.Read(buf) // crypto/rand.Read never fails
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: commonLabels(c)},
			Data:       map[string][]byte{key: []byte(hex.EncodeToString(buf))},
		}
		if err := controllerutil.SetControllerReference(c, secret, r.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Create(ctx, secret); err != nil {
			return ctrl.Result{}, fmt.Errorf("create admin token secret: %w", err)
		}
		r.event(c, corev1.EventTypeNormal, "AdminTokenCreated", "Create", "Created admin token Secret %s", name)
	case apierrors.IsNotFound(err):
		s.degrade("AdminTokenMissing", "Secret %s named by spec.adminTokenSecretRef does not exist", name)
		s.stop = true
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	s.token = string(secret.Data[key])
	if s.token == "" {
		s.degrade("AdminTokenMissing", "Secret %s has no key %q", name, key)
		s.stop = true
	}
	return ctrl.Result{}, nil
}

func (r *IMClusterReconciler) reconcileConfigMap(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	want := desiredConfigMap(c)
	s.configHash = hashOf(want.Data)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: c.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, cm, func() error {
		cm.Labels = mergeLabels(cm.Labels, want.Labels)
		cm.Data = want.Data
		return controllerutil.SetControllerReference(c, cm, r.Scheme())
	})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile configmap: %w", err)
	}
	return ctrl.Result{}, nil
}

func (r *IMClusterReconciler) reconcileServices(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	want := desiredPeerService(c)
	peers := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: want.Name, Namespace: c.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, peers, func() error {
		peers.Labels = mergeLabels(peers.Labels, want.Labels)
		peers.Spec.ClusterIP = corev1.ClusterIPNone
		peers.Spec.PublishNotReadyAddresses = true
		peers.Spec.Selector = want.Spec.Selector
		peers.Spec.Ports = want.Spec.Ports
		return controllerutil.SetControllerReference(c, peers, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile peer service: %w", err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: clientServiceName(c), Namespace: c.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, svc, func() error {
		applyClientService(c, svc)
		return controllerutil.SetControllerReference(c, svc, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile client service: %w", err)
	}
	return ctrl.Result{}, nil
}

func (r *IMClusterReconciler) reconcilePDB(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: pdbName(c), Namespace: c.Namespace}}
	if en := c.Spec.PodDisruptionBudget.Enabled; en != nil && !*en {
		if err := r.Delete(ctx, pdb); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("delete pod disruption budget: %w", err)
		}
		return ctrl.Result{}, nil
	}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, pdb, func() error {
		applyPDB(c, pdb)
		return controllerutil.SetControllerReference(c, pdb, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile pod disruption budget: %w", err)
	}
	return ctrl.Result{}, nil
}

func (r *IMClusterReconciler) reconcileNetworkPolicy(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: networkPolicyName(c), Namespace: c.Namespace}}
	if !c.NetworkPolicyEnabled() {
		if err := r.Delete(ctx, np); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("delete network policy: %w", err)
		}
		return ctrl.Result{}, nil
	}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, np, func() error {
		applyNetworkPolicy(c, np, r.Config.OperatorNamespace, r.operatorPodLabels())
		return controllerutil.SetControllerReference(c, np, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile network policy: %w", err)
	}
	return ctrl.Result{}, nil
}

var serviceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

func (r *IMClusterReconciler) reconcileServiceMonitor(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if !c.Spec.Monitoring.ServiceMonitor {
		return ctrl.Result{}, nil
	}
	if _, err := r.RESTMapper().RESTMapping(serviceMonitorGVK.GroupKind(), serviceMonitorGVK.Version); err != nil {
		if meta.IsNoMatchError(err) {
			s.degrade("ServiceMonitorUnavailable",
				"spec.monitoring.serviceMonitor is set but the monitoring.coreos.com/v1 ServiceMonitor CRD is not installed")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	interval := c.Spec.Monitoring.Interval
	if interval == "" {
		interval = "30s"
	}
	sm := &unstructured.Unstructured{}
	sm.SetGroupVersionKind(serviceMonitorGVK)
	sm.SetName(c.Name)
	sm.SetNamespace(c.Namespace)
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, sm, func() error {
		sm.SetLabels(mergeLabels(mergeLabels(sm.GetLabels(), commonLabels(c)), c.Spec.Monitoring.Labels))
		sm.Object["spec"] = map[string]any{
			"selector": map[string]any{"matchLabels": toAnyMap(selectorLabels(c))},
			// job="imnode" on every node target: the alerting rules and the
			// dashboard select the nodes by it.
			"endpoints": []any{map[string]any{"port": portNameAdmin, "path": "/metrics", "interval": interval,
				"relabelings": []any{map[string]any{"targetLabel": "job", "replacement": metricsJob}}}},
		}
		return controllerutil.SetControllerReference(c, sm, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile service monitor: %w", err)
	}
	return ctrl.Result{}, nil
}

var prometheusRuleGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}

func (r *IMClusterReconciler) reconcilePrometheusRule(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if !c.Spec.Monitoring.PrometheusRule {
		return ctrl.Result{}, nil
	}
	if _, err := r.RESTMapper().RESTMapping(prometheusRuleGVK.GroupKind(), prometheusRuleGVK.Version); err != nil {
		if meta.IsNoMatchError(err) {
			s.degrade("PrometheusRuleUnavailable",
				"spec.monitoring.prometheusRule is set but the monitoring.coreos.com/v1 PrometheusRule CRD is not installed")
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	spec, err := clusterRules(c)
	if err != nil {
		return ctrl.Result{}, err
	}
	pr := &unstructured.Unstructured{}
	pr.SetGroupVersionKind(prometheusRuleGVK)
	pr.SetName(c.Name)
	pr.SetNamespace(c.Namespace)
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, pr, func() error {
		pr.SetLabels(mergeLabels(mergeLabels(pr.GetLabels(), commonLabels(c)), c.Spec.Monitoring.Labels))
		pr.Object["spec"] = spec
		return controllerutil.SetControllerReference(c, pr, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile prometheus rule: %w", err)
	}
	return ctrl.Result{}, nil
}

func toAnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// observe reads the StatefulSet, the pods and every reachable node.
func (r *IMClusterReconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	s.pods, s.nodes, s.nodeErrs, s.drains = map[int32]*corev1.Pod{}, map[int32]*adminapi.NodeStatus{},
		map[int32]error{}, map[int32]*adminapi.DrainStatus{}
	sts := &appsv1.StatefulSet{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: statefulSetName(c)}, sts); {
	case err == nil:
		s.sts = sts
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(c.Namespace), client.MatchingLabels(selectorLabels(c))); err != nil {
		return ctrl.Result{}, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if o := ordinalOf(c, p.Name); o >= 0 {
			s.pods[o] = p
		}
	}
	if s.token == "" && !c.IsPaused() {
		return ctrl.Result{}, nil
	}
	if s.token == "" {
		name, key := adminTokenSecret(c)
		secret := &corev1.Secret{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, secret); err == nil {
			s.token = string(secret.Data[key])
		}
	}
	for _, o := range sortedOrdinals(s.pods) {
		p := s.pods[o]
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" && !podReady(p) {
			continue // not started: nothing to ask
		}
		r.observeNode(ctx, s, o)
	}
	return ctrl.Result{}, nil
}

func (r *IMClusterReconciler) observeNode(ctx context.Context, s *scope, o int32) {
	c := s.cluster
	ac := r.adminClient(c, podName(c, o), s.token)
	n, err := ac.Node(ctx)
	if err != nil {
		s.nodeErrs[o] = err
		return
	}
	s.nodes[o] = &n
	if n.State == adminapi.StateDraining || n.State == adminapi.StateLeft {
		if d, err := ac.Drain(ctx); err == nil {
			s.drains[o] = &d
		} else {
			s.nodeErrs[o] = err
		}
	}
	if s.view == nil {
		if v, err := ac.Cluster(ctx); err == nil {
			s.view = &v
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// reconcileStatefulSet creates the StatefulSet with one replica, or updates its
// template. Replicas change only in reconcileStep.
func (r *IMClusterReconciler) reconcileStatefulSet(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	s.template = desiredPodTemplate(c, s.configHash, s.version, r.clusterDomain())
	if s.sts == nil {
		sts := desiredStatefulSet(c, s.template, 1)
		if err := controllerutil.SetControllerReference(c, sts, r.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Create(ctx, sts); err != nil {
			return ctrl.Result{}, fmt.Errorf("create statefulset: %w", err)
		}
		r.event(c, corev1.EventTypeNormal, "StatefulSetCreated", "Create",
			"Created StatefulSet %s with 1 of %d nodes; the rest join one at a time", sts.Name, c.Spec.Replicas)
		s.sts = sts
		s.operation = &imv1.Operation{Type: imv1.OperationScaleUp, Pod: podName(c, 0), Message: "waiting for the first node"}
		s.stop = true
		return ctrl.Result{}, nil
	}
	want := desiredStatefulSet(c, s.template, ptr.Deref(s.sts.Spec.Replicas, 1))
	cur := s.sts
	if cur.Spec.Template.Annotations[AnnotationTemplateHash] == s.template.Annotations[AnnotationTemplateHash] &&
		equalRetention(cur.Spec.PersistentVolumeClaimRetentionPolicy, want.Spec.PersistentVolumeClaimRetentionPolicy) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Template = want.Spec.Template
	cur.Spec.PersistentVolumeClaimRetentionPolicy = want.Spec.PersistentVolumeClaimRetentionPolicy
	if err := r.Patch(ctx, cur, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("update statefulset template: %w", err)
	}
	r.event(c, corev1.EventTypeNormal, "TemplateUpdated", "Update",
		"Updated the pod template (version %s); pods restart one at a time", s.version)
	return ctrl.Result{}, nil
}

func equalRetention(a, b *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// reconcilePVCs grows claims to spec.storage.size and, with reclaimPolicy
// Delete, deletes the claims of ordinals the StatefulSet no longer has (their
// nodes were drained before the StatefulSet shrank).
func (r *IMClusterReconciler) reconcilePVCs(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, pvcs, client.InNamespace(c.Namespace), client.MatchingLabels(selectorLabels(c))); err != nil {
		return ctrl.Result{}, err
	}
	replicas := ptr.Deref(s.sts.Spec.Replicas, 0)
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		podPart, ok := strings.CutPrefix(pvc.Name, dataVolume+"-")
		o := ordinalOf(c, podPart)
		if !ok || o < 0 {
			continue
		}
		if o >= replicas && c.Spec.Storage.ReclaimPolicy == imv1.ReclaimDelete && s.pods[o] == nil && pvc.DeletionTimestamp == nil {
			if err := r.Delete(ctx, pvc); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("delete claim %s: %w", pvc.Name, err)
			}
			r.event(c, corev1.EventTypeNormal, "VolumeDeleted", "ScaleDown", "Deleted claim %s of drained node %s", pvc.Name, podName(c, o))
			continue
		}
		cur := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		size := c.StorageSize()
		if o < replicas && cur.Cmp(size) < 0 {
			patch := client.MergeFrom(pvc.DeepCopy())
			if pvc.Spec.Resources.Requests == nil {
				pvc.Spec.Resources.Requests = corev1.ResourceList{}
			}
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = size
			if err := r.Patch(ctx, pvc, patch); err != nil {
				s.degrade("VolumeExpansionFailed", "Expanding claim %s to %s: %v", pvc.Name, size.String(), err)
				continue
			}
			r.event(c, corev1.EventTypeNormal, "VolumeExpanding", "Resize", "Expanding claim %s to %s", pvc.Name, size.String())
		}
	}
	return ctrl.Result{}, nil
}

// reconcileStep takes at most one scale or restart step.
func (r *IMClusterReconciler) reconcileStep(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	cur := ptr.Deref(s.sts.Spec.Replicas, 0)
	want := c.Spec.Replicas
	r.reportStuckPods(s)

	// A scale-down that was reversed leaves a node draining (or left) at an
	// ordinal the spec keeps: bring it back before anything else.
	for o := range min(cur, want) {
		n := s.nodes[o]
		if n == nil || (n.State != adminapi.StateDraining && n.State != adminapi.StateLeft) {
			continue
		}
		return r.cancelDrain(ctx, s, o)
	}
	switch {
	case want > cur:
		return r.scaleUp(ctx, s, cur)
	case want < cur:
		return r.scaleDown(ctx, s, cur)
	default:
		return r.rollPods(ctx, s, cur)
	}
}

func (r *IMClusterReconciler) cancelDrain(ctx context.Context, s *scope, o int32) (ctrl.Result, error) {
	c := s.cluster
	pod := podName(c, o)
	s.operation = &imv1.Operation{Type: imv1.OperationScaleUp, Pod: pod, Message: "cancelling the drain of a node the spec keeps"}
	if err := r.adminClient(c, pod, s.token).CancelDrain(ctx); err != nil {
		s.degrade("AdminAPIUnavailable", "Cancelling the drain of %s: %v", pod, err)
		return ctrl.Result{}, nil
	}
	r.event(c, corev1.EventTypeNormal, "DrainCancelled", "ScaleUp",
		"Cancelled the drain of %s: spec.replicas is %d again", pod, c.Spec.Replicas)
	return ctrl.Result{}, nil
}

// setReplicas is the only place that changes the StatefulSet's replicas.
func (r *IMClusterReconciler) setReplicas(ctx context.Context, s *scope, n int32) error {
	patch := client.MergeFrom(s.sts.DeepCopy())
	s.sts.Spec.Replicas = new(n)
	if err := r.Patch(ctx, s.sts, patch); err != nil {
		return fmt.Errorf("scale statefulset to %d: %w", n, err)
	}
	return nil
}

func (r *IMClusterReconciler) scaleUp(ctx context.Context, s *scope, cur int32) (ctrl.Result, error) {
	c := s.cluster
	if cur > 0 {
		last := cur - 1
		pod := podName(c, last)
		s.operation = &imv1.Operation{Type: imv1.OperationScaleUp, Pod: pod}
		if msg := r.notCaughtUp(s, last); msg != "" {
			s.operation.Message = msg
			s.progress("ScalingUp", "Scaling up to %d nodes: %s", c.Spec.Replicas, msg)
			return ctrl.Result{}, nil
		}
	}
	next := podName(c, cur)
	logf.FromContext(ctx).Info("Adding node", "pod", next)
	if err := r.setReplicas(ctx, s, cur+1); err != nil {
		return ctrl.Result{}, err
	}
	s.operation = &imv1.Operation{Type: imv1.OperationScaleUp, Pod: next, Message: "waiting for the node to join and catch up"}
	s.progress("ScalingUp", "Adding node %s (%d of %d)", next, cur+1, c.Spec.Replicas)
	r.event(c, corev1.EventTypeNormal, "ScalingUp", "ScaleUp", "Adding node %s (%d of %d)", next, cur+1, c.Spec.Replicas)
	return ctrl.Result{}, nil
}

// notCaughtUp returns why ordinal o is not yet a ready, caught-up node, or "".
func (r *IMClusterReconciler) notCaughtUp(s *scope, o int32) string {
	c := s.cluster
	pod := podName(c, o)
	p := s.pods[o]
	switch n := s.nodes[o]; {
	case p == nil:
		return fmt.Sprintf("waiting for pod %s to be created", pod)
	case !podReady(p):
		return fmt.Sprintf("waiting for pod %s to be ready", pod)
	case s.nodeErrs[o] != nil:
		s.degrade("AdminAPIUnavailable", "Admin API of %s: %v", pod, s.nodeErrs[o])
		return fmt.Sprintf("waiting for the admin API of %s", pod)
	case n == nil:
		return fmt.Sprintf("waiting for the admin API of %s", pod)
	case !n.CaughtUp():
		return fmt.Sprintf("waiting for node %s to catch up (state %s, %d shards receiving)", pod, n.State, len(n.Receiving))
	}
	return ""
}

func (r *IMClusterReconciler) scaleDown(ctx context.Context, s *scope, cur int32) (ctrl.Result, error) {
	c := s.cluster
	target := cur - 1
	pod := podName(c, target)
	s.operation = &imv1.Operation{Type: imv1.OperationScaleDown, Pod: pod}
	if c.Spec.Replicas < c.Spec.ReplicationFactor {
		// The CRD rejects this; an older CRD or a direct StatefulSet edit may not.
		s.degrade("ScaleDownRefused", "spec.replicas %d is below replicationFactor %d: refusing to drain %s",
			c.Spec.Replicas, c.Spec.ReplicationFactor, pod)
		s.operation.Message = "refused: replicas below replicationFactor"
		if meta.FindStatusCondition(s.before.Status.Conditions, imv1.ConditionDegraded) == nil ||
			!hasReason(s.before, imv1.ConditionDegraded, "ScaleDownRefused") {
			r.event(c, corev1.EventTypeWarning, "ScaleDownRefused", "ScaleDown",
				"spec.replicas %d is below replicationFactor %d", c.Spec.Replicas, c.Spec.ReplicationFactor)
		}
		return ctrl.Result{}, nil
	}
	n := s.nodes[target]
	if n == nil {
		if s.pods[target] == nil {
			// Nothing runs at this ordinal (the pod is gone): there is no node to
			// drain only if the cluster no longer lists it as owning data.
			if s.view == nil {
				s.operation.Message = "waiting for a node to report the cluster view"
				s.degrade("AdminAPIUnavailable", "No node answered; cannot verify %s holds no shards", pod)
				return ctrl.Result{}, nil
			}
			if m, ok := s.view.Member(pod); ok && m.State.OwnsData() {
				s.operation.Message = "pod is gone but the node still owns shards"
				s.degrade("NodeMissing", "Pod %s is missing but node %s is still %s in the roster; recreate the pod or remove the node",
					pod, pod, m.State)
				return ctrl.Result{}, nil
			}
			return r.shrink(ctx, s, target)
		}
		s.operation.Message = "waiting for the admin API of the node to drain"
		s.degrade("AdminAPIUnavailable", "Cannot reach the admin API of %s to drain it: %v", pod, s.nodeErrs[target])
		return ctrl.Result{}, nil
	}
	d := s.drains[target]
	switch {
	case n.State != adminapi.StateDraining && n.State != adminapi.StateLeft:
		if msg := clusterNotHealthy(s); msg != "" {
			s.operation.Message = "waiting before draining: " + msg
			s.progress("ScalingDown", "Waiting to drain %s: %s", pod, msg)
			return ctrl.Result{}, nil
		}
		op, err := r.adminClient(c, pod, s.token).StartDrain(ctx)
		if err != nil {
			s.degrade("AdminAPIUnavailable", "Starting the drain of %s: %v", pod, err)
			return ctrl.Result{}, nil
		}
		s.operation.Message = "drain " + op.Operation + " started"
		s.progress("ScalingDown", "Draining %s", pod)
		r.event(c, corev1.EventTypeNormal, "Draining", "ScaleDown", "Draining node %s (operation %s) before removing it", pod, op.Operation)
		return ctrl.Result{}, nil
	case d == nil:
		s.operation.Message = "waiting for the drain progress of " + pod
		s.degrade("AdminAPIUnavailable", "Reading the drain progress of %s: %v", pod, s.nodeErrs[target])
		return ctrl.Result{}, nil
	case !d.Done:
		s.operation.Message = fmt.Sprintf("draining: %d shards, %d bytes left", d.ShardsLeft, d.BytesLeft)
		s.progress("ScalingDown", "Draining %s: %d shards left", pod, d.ShardsLeft)
		return ctrl.Result{}, nil
	}
	if s.view == nil {
		s.operation.Message = "drained; waiting for the cluster view"
		return ctrl.Result{}, nil
	}
	if k := len(s.view.UnderReplicated); k > 0 {
		s.operation.Message = fmt.Sprintf("drained; waiting for %d under-replicated shards", k)
		s.progress("ScalingDown", "Node %s drained; %d shards still under-replicated", pod, k)
		return ctrl.Result{}, nil
	}
	return r.shrink(ctx, s, target)
}

func (r *IMClusterReconciler) shrink(ctx context.Context, s *scope, target int32) (ctrl.Result, error) {
	c := s.cluster
	pod := podName(c, target)
	logf.FromContext(ctx).Info("Removing drained node", "pod", pod)
	if err := r.setReplicas(ctx, s, target); err != nil {
		return ctrl.Result{}, err
	}
	s.operation = &imv1.Operation{Type: imv1.OperationScaleDown, Pod: pod, Message: "removed"}
	s.progress("ScalingDown", "Removed drained node %s", pod)
	r.event(c, corev1.EventTypeNormal, "NodeRemoved", "ScaleDown", "Removed drained node %s (%d nodes left)", pod, target)
	return ctrl.Result{}, nil
}

// clusterNotHealthy says why shards are not all fully replicated, or "".
func clusterNotHealthy(s *scope) string {
	switch {
	case s.view == nil:
		return "no node reported the cluster view"
	case len(s.view.UnderReplicated) > 0:
		return fmt.Sprintf("%d shards under-replicated", len(s.view.UnderReplicated))
	}
	for _, m := range s.view.Members {
		if m.State.OwnsData() && !m.Alive {
			return fmt.Sprintf("node %s is down", m.ID)
		}
	}
	return ""
}

// rollPods restarts at most one pod that runs an old template, and only when
// every pod is ready and caught up and no shard is under-replicated.
func (r *IMClusterReconciler) rollPods(ctx context.Context, s *scope, cur int32) (ctrl.Result, error) {
	c := s.cluster
	want := s.template.Annotations[AnnotationTemplateHash]
	stale := int32(-1)
	for o := cur - 1; o >= 0; o-- {
		if p := s.pods[o]; p != nil && p.Annotations[AnnotationTemplateHash] != want {
			stale = o
			break
		}
	}
	for o := range cur {
		if msg := r.notCaughtUp(s, o); msg != "" {
			switch {
			case stale >= 0:
				s.operation = &imv1.Operation{Type: imv1.OperationUpgrade, Pod: podName(c, o), Message: msg}
				s.progress("RollingUpdate", "Rolling update: %s", msg)
			case o == cur-1 && s.before.Status.Phase != imv1.PhaseRecovering:
				// The last node added by a scale-up is still joining (not
				// a node of the cluster coming back: informational only,
				// the step is the same).
				s.operation = &imv1.Operation{Type: imv1.OperationScaleUp, Pod: podName(c, o), Message: msg}
				s.progress("ScalingUp", "Scaling up to %d nodes: %s", c.Spec.Replicas, msg)
			default:
				s.progress("WaitingForNodes", "%s", msg)
			}
			return ctrl.Result{}, nil
		}
	}
	if stale < 0 {
		return ctrl.Result{}, nil
	}
	pod := podName(c, stale)
	s.operation = &imv1.Operation{Type: imv1.OperationUpgrade, Pod: pod}
	if msg := clusterNotHealthy(s); msg != "" {
		s.operation.Message = "waiting: " + msg
		s.progress("RollingUpdate", "Waiting to restart %s: %s", pod, msg)
		return ctrl.Result{}, nil
	}
	logf.FromContext(ctx).Info("Restarting pod on the new template", "pod", pod)
	if err := r.Delete(ctx, s.pods[stale], client.Preconditions{UID: &s.pods[stale].UID}); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("restart pod %s: %w", pod, err)
	}
	s.operation.Message = "restarting on the new template"
	s.progress("RollingUpdate", "Restarting %s on the new template", pod)
	r.event(c, corev1.EventTypeNormal, "RestartingPod", "RollingUpdate", "Restarting %s on the new template (version %s)", pod, s.version)
	return ctrl.Result{}, nil
}

// stuckReasons are container waiting reasons that do not resolve by waiting.
var stuckReasons = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true,
	"InvalidImageName": true, "CreateContainerConfigError": true, "CreateContainerError": true,
}

// reportStuckPods marks the cluster Degraded for pods that will not become
// ready on their own. The gates in scaleUp and rollPods keep the operator from
// touching the next pod meanwhile.
func (r *IMClusterReconciler) reportStuckPods(s *scope) {
	for _, o := range sortedOrdinals(s.pods) {
		p := s.pods[o]
		if podReady(p) || p.DeletionTimestamp != nil {
			continue
		}
		if why := stuckReason(p); why != "" {
			s.degrade("PodStuck", "Pod %s is not ready: %s", p.Name, why)
		} else if !p.CreationTimestamp.IsZero() && time.Since(p.CreationTimestamp.Time) > r.stuckAfter() {
			s.degrade("PodStuck", "Pod %s is not ready after %s", p.Name, r.stuckAfter())
		}
	}
}

func stuckReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && stuckReasons[w.Reason] {
			return w.Reason + ": " + w.Message
		}
	}
	return ""
}

func hasReason(c *imv1.IMCluster, condType, reason string) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, condType)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == reason
}
