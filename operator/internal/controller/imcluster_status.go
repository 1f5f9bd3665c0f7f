package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// patchStatus computes the status from what this pass observed and did, and
// patches it. It never copies conditions forward without re-deciding them.
func (r *IMClusterReconciler) patchStatus(ctx context.Context, s *scope) error {
	c := s.cluster
	st := &c.Status
	gen := c.Generation
	st.ObservedGeneration = gen
	st.Selector = labels.SelectorFromSet(selectorLabels(c)).String()
	st.CurrentOperation = s.operation
	if op := s.operation; op != nil {
		op.StartedAt = operationStart(s.before.Status.CurrentOperation, op, r.now())
	}
	if s.creds != nil {
		st.Security = s.status
	}

	st.Replicas, st.ReadyReplicas, st.UpdatedReplicas = 0, 0, 0
	st.Members = nil
	wantHash := ""
	if s.sts != nil {
		wantHash = s.sts.Spec.Template.Annotations[AnnotationTemplateHash]
	}
	versions := map[string]bool{}
	for _, o := range sortedOrdinals(s.pods) {
		p := s.pods[o]
		st.Replicas++
		m := imv1.MemberStatus{Pod: p.Name, NodeID: p.Name, State: "unknown", Ready: podReady(p)}
		if m.Ready {
			st.ReadyReplicas++
		}
		if wantHash != "" && p.Annotations[AnnotationTemplateHash] == wantHash {
			st.UpdatedReplicas++
		}
		if n := s.nodes[o]; n != nil {
			m.State, m.Version, m.Shards = string(n.State), n.Version, int32(n.ShardsReplicated)
		} else {
			m.Version = unansweredVersion(s.before, p)
		}
		versions[m.Version] = true
		st.Members = append(st.Members, m)
	}
	st.CurrentVersion = ""
	if len(versions) == 1 {
		for v := range versions {
			st.CurrentVersion = v
		}
	}
	st.Shards = imv1.ShardsStatus{Total: c.Spec.Shards}
	if v := s.view; v != nil {
		st.Shards.UnderReplicated, st.Shards.Moving = int32(len(v.UnderReplicated)), int32(len(v.Moves))
	}

	setCondition(c, r.availableCondition(s))
	setCondition(c, progressingCondition(s))
	setCondition(c, degradedCondition(s))
	setCondition(c, rebalancingCondition(s))
	paused := metav1.Condition{Type: imv1.ConditionReconciliationPaused, Status: metav1.ConditionFalse, Reason: "NotPaused",
		Message: "The operator reconciles this cluster"}
	if c.IsPaused() {
		paused.Status, paused.Reason = metav1.ConditionTrue, "Paused"
		paused.Message = fmt.Sprintf("spec.paused or annotation %s=true: no changes are made", imv1.PausedAnnotation)
	}
	setCondition(c, paused)
	st.Phase = phaseOf(s)
	if err := r.Status().Patch(ctx, c, client.MergeFrom(s.before)); err != nil {
		return err
	}
	recordOperation(c)
	return nil
}

// operationStart is when op began: the previous pass's start when that was
// the same operation (type and pod), now otherwise.
func operationStart(prev, op *imv1.Operation, now time.Time) *metav1.Time {
	if prev != nil && prev.StartedAt != nil && prev.Type == op.Type && prev.Pod == op.Pod {
		return prev.StartedAt
	}
	return &metav1.Time{Time: now.Truncate(time.Second)}
}

// unansweredVersion is the version reported for a pod whose node did not
// answer this pass: the version of its pod template (what the node reported
// last, unless the pod was replaced on another version since), or, for a
// pod without that annotation, what the node reported last. A failed poll
// never blanks status.currentVersion on its own.
func unansweredVersion(before *imv1.IMCluster, p *corev1.Pod) string {
	if v := p.Annotations[AnnotationVersion]; v != "" {
		return v
	}
	for _, m := range before.Status.Members {
		if m.Pod == p.Name {
			return m.Version
		}
	}
	return ""
}

func setCondition(c *imv1.IMCluster, cond metav1.Condition) {
	cond.ObservedGeneration = c.Generation
	meta.SetStatusCondition(&c.Status.Conditions, cond)
}

func (r *IMClusterReconciler) availableCondition(s *scope) metav1.Condition {
	c := s.cluster
	need := min(c.Spec.WriteQuorum, c.Spec.Replicas)
	ready := c.Status.ReadyReplicas
	cond := metav1.Condition{Type: imv1.ConditionAvailable}
	switch {
	case ready >= need && ready > 0 && s.view != nil:
		cond.Status, cond.Reason = metav1.ConditionTrue, "QuorumReady"
		cond.Message = fmt.Sprintf("%d of %d nodes ready (write quorum %d)", ready, c.Spec.Replicas, c.Spec.WriteQuorum)
	case ready >= need && ready > 0:
		cond.Status, cond.Reason = metav1.ConditionUnknown, "ClusterViewUnavailable"
		cond.Message = fmt.Sprintf("%d nodes ready but no admin API answered", ready)
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, "NotEnoughReadyNodes"
		cond.Message = fmt.Sprintf("%d nodes ready, write quorum needs %d", ready, need)
	}
	return cond
}

func progressingCondition(s *scope) metav1.Condition {
	c := s.cluster
	cond := metav1.Condition{Type: imv1.ConditionProgressing, Status: metav1.ConditionTrue}
	switch {
	case c.IsPaused():
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Paused", "Reconciliation is paused"
	case s.progressing != "":
		cond.Reason, cond.Message = s.progressing, s.progressingMsg
	case s.operation != nil:
		cond.Reason, cond.Message = string(s.operation.Type), s.operation.Message
	case s.sts == nil || c.Status.Replicas != c.Spec.Replicas || c.Status.ReadyReplicas != c.Spec.Replicas ||
		c.Status.UpdatedReplicas != c.Spec.Replicas || ptr.Deref(s.sts.Spec.Replicas, 0) != c.Spec.Replicas:
		cond.Reason = "WaitingForNodes"
		cond.Message = fmt.Sprintf("%d of %d nodes exist, %d ready, %d updated",
			c.Status.Replicas, c.Spec.Replicas, c.Status.ReadyReplicas, c.Status.UpdatedReplicas)
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, "Reconciled"
		cond.Message = fmt.Sprintf("%d nodes ready on the current template", c.Spec.Replicas)
	}
	return cond
}

func degradedCondition(s *scope) metav1.Condition {
	if len(s.degraded) == 0 {
		return metav1.Condition{Type: imv1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: "AsExpected",
			Message: "Nothing needs attention"}
	}
	msgs := make([]string, 0, len(s.degraded))
	for _, d := range s.degraded {
		msgs = append(msgs, d.message)
	}
	return metav1.Condition{Type: imv1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: s.degraded[0].reason,
		Message: strings.Join(msgs, "; ")}
}

func rebalancingCondition(s *scope) metav1.Condition {
	cond := metav1.Condition{Type: imv1.ConditionRebalancing}
	receiving, draining := 0, 0
	for _, n := range s.nodes {
		receiving += len(n.Receiving)
		if n.State == adminapi.StateDraining {
			draining++
		}
	}
	switch {
	case s.view == nil && len(s.nodes) == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionUnknown, "ClusterViewUnavailable", "No node admin API answered"
	case draining > 0 || receiving > 0 || (s.view != nil && len(s.view.Moves) > 0):
		moves := 0
		if s.view != nil {
			moves = len(s.view.Moves)
		}
		cond.Status, cond.Reason = metav1.ConditionTrue, "ShardsMoving"
		cond.Message = fmt.Sprintf("%d moves in flight, %d shards being received, %d nodes draining", moves, receiving, draining)
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Balanced", "No shard is moving"
	}
	return cond
}

// phaseOf sums the status up in one word (docs/operator.md, "Phases"). A
// cluster that formed is never Creating again: it is Running, or says what
// keeps it from Running. While it is not settled and no step is in flight
// the phase that began it stays (a scale is Scaling until it is over, even
// while its last node's pod waits for its readiness probe).
func phaseOf(s *scope) imv1.Phase {
	c := s.cluster
	switch {
	case c.IsPaused():
		return imv1.PhasePaused
	case len(s.degraded) > 0:
		return imv1.PhaseDegraded
	case !meta.IsStatusConditionTrue(c.Status.Conditions, ConditionFormed):
		if s.sts == nil {
			return imv1.PhasePending
		}
		return imv1.PhaseCreating
	case s.operation != nil && s.operation.Type == imv1.OperationUpgrade:
		return imv1.PhaseUpgrading
	case s.operation != nil:
		return imv1.PhaseScaling
	case s.settled():
		return imv1.PhaseRunning
	}
	switch prev := s.before.Status.Phase; prev {
	case imv1.PhaseScaling, imv1.PhaseRecovering, imv1.PhaseUpgrading:
		return prev
	case imv1.PhaseCreating, imv1.PhasePending:
		return imv1.PhaseScaling // the nodes after the first
	default: // after Running, Degraded or Paused: what is going on now
		if s.nodeDown() {
			return imv1.PhaseRecovering
		}
		return imv1.PhaseScaling
	}
}

// nodeDown reports whether a node the cluster had is down: the pod of an
// ordinal the spec keeps is missing or terminating, or the roster lists its
// node as active but not alive (its process restarting).
func (s *scope) nodeDown() bool {
	c := s.cluster
	for o := range c.Spec.Replicas {
		if p := s.pods[o]; p == nil || p.DeletionTimestamp != nil {
			return true
		}
		if s.view != nil {
			if m, ok := s.view.Member(podName(c, o)); ok && m.State == adminapi.StateActive && !m.Alive {
				return true
			}
		}
	}
	return false
}

// settled reports that every node the spec wants is there, ready, active
// and caught up, no other pod is left, and no shard is moving.
func (s *scope) settled() bool {
	c := s.cluster
	if s.sts == nil || ptr.Deref(s.sts.Spec.Replicas, 0) != c.Spec.Replicas {
		return false
	}
	for o, p := range s.pods {
		if o >= c.Spec.Replicas || p.DeletionTimestamp != nil || !podReady(p) {
			return false
		}
	}
	if int32(len(s.pods)) != c.Spec.Replicas {
		return false
	}
	for _, n := range s.nodes {
		if !n.CaughtUp() {
			return false
		}
	}
	return s.view == nil || len(s.view.Moves) == 0
}
