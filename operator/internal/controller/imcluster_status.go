package controller

import (
	"context"
	"fmt"
	"strings"

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
			versions[n.Version] = true
		} else {
			versions[""] = true
		}
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
	return r.Status().Patch(ctx, c, client.MergeFrom(s.before))
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

func phaseOf(s *scope) imv1.Phase {
	c := s.cluster
	switch {
	case c.IsPaused():
		return imv1.PhasePaused
	case len(s.degraded) > 0:
		return imv1.PhaseDegraded
	case s.sts == nil:
		return imv1.PhasePending
	case s.operation != nil && s.operation.Type == imv1.OperationUpgrade:
		return imv1.PhaseUpgrading
	case c.Status.ReadyReplicas == 0:
		return imv1.PhaseCreating
	case s.operation != nil:
		return imv1.PhaseScaling
	case s.progressing != "" || c.Status.ReadyReplicas != c.Spec.Replicas:
		return imv1.PhaseCreating
	}
	return imv1.PhaseRunning
}
