//go:build envtest

package controller

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// reconcileN runs n reconciles and kubelet passes without catching nodes up.
func (e *env) reconcileN(name string, n int) {
	e.t.Helper()
	for range n {
		e.reconcile(name)
		e.kubelet(name)
	}
}

func TestOperatorScaleUpOneNodeAtATime(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("up", 3))
	for i := range int32(3) {
		pod := fmt.Sprintf("up-%d", i)
		e.reconcileN("up", 3)
		if got := e.stsReplicas("up"); got != i+1 {
			t.Fatalf("with %s joining: StatefulSet replicas %d, want %d", pod, got, i+1)
		}
		c := e.get("up")
		if op := c.Status.CurrentOperation; op == nil || op.Type != imv1.OperationScaleUp || op.Pod != pod {
			t.Fatalf("current operation %+v, want ScaleUp of %s", op, pod)
		}
		if !condIs(c, imv1.ConditionProgressing, metav1.ConditionTrue) || !condIs(c, imv1.ConditionRebalancing, metav1.ConditionTrue) {
			t.Fatalf("while %s joins: conditions %+v", pod, c.Status.Conditions)
		}
		e.nodes.catchUp(pod)
	}
	c := e.converge("up", 5)
	if e.stsReplicas("up") != 3 || c.Status.ReadyReplicas != 3 || c.Status.UpdatedReplicas != 3 || c.Status.CurrentVersion != "1.0.0" {
		t.Fatalf("converged status %+v", c.Status)
	}
	if !condIs(c, imv1.ConditionAvailable, metav1.ConditionTrue) || !condIs(c, imv1.ConditionDegraded, metav1.ConditionFalse) ||
		!condIs(c, imv1.ConditionRebalancing, metav1.ConditionFalse) || c.Status.Phase != imv1.PhaseRunning {
		t.Fatalf("converged conditions %+v phase %s", c.Status.Conditions, c.Status.Phase)
	}
	if len(c.Status.Members) != 3 || c.Status.Members[2].NodeID != "up-2" || c.Status.Members[2].State != "active" ||
		!c.Status.Members[2].Ready || c.Status.Members[2].Shards != 10 {
		t.Fatalf("members %+v", c.Status.Members)
	}
	if c.Status.CurrentOperation != nil {
		t.Fatalf("operation left over: %+v", c.Status.CurrentOperation)
	}
}

// bringUp creates a cluster of n nodes and converges it.
func (e *env) bringUp(name string, n int32, mutate ...func(*imv1.IMCluster)) {
	e.t.Helper()
	e.create(e.cluster(name, n, mutate...))
	e.converge(name, int(n)*4+4)
}

func TestOperatorScaleDownDrainsFirst(t *testing.T) {
	for _, policy := range []imv1.ReclaimPolicy{imv1.ReclaimRetain, imv1.ReclaimDelete} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			e.bringUp("down", 4, func(c *imv1.IMCluster) { c.Spec.Storage.ReclaimPolicy = policy })
			e.modify("down", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })

			e.reconcileN("down", 2)
			if e.nodes.state("down-3") != adminapi.StateDraining || e.stsReplicas("down") != 4 {
				t.Fatalf("drain not started first: node %s, replicas %d", e.nodes.state("down-3"), e.stsReplicas("down"))
			}
			c := e.get("down")
			if op := c.Status.CurrentOperation; op == nil || op.Type != imv1.OperationScaleDown || op.Pod != "down-3" {
				t.Fatalf("operation %+v", op)
			}
			if !condIs(c, imv1.ConditionRebalancing, metav1.ConditionTrue) {
				t.Fatalf("draining but not Rebalancing: %+v", cond(c, imv1.ConditionRebalancing))
			}
			// Drained but shards still under-replicated: keep the node.
			e.nodes.finishDrain("down-3")
			e.nodes.setUnderReplicated(4, 7)
			e.reconcileN("down", 2)
			if e.stsReplicas("down") != 4 {
				t.Fatalf("shrank while shards are under-replicated")
			}
			if c := e.get("down"); c.Status.Shards.UnderReplicated != 2 {
				t.Fatalf("status shards %+v", c.Status.Shards)
			}
			e.nodes.setUnderReplicated()
			e.reconcile("down")
			if e.stsReplicas("down") != 3 {
				t.Fatalf("drained node not removed: replicas %d", e.stsReplicas("down"))
			}
			c = e.converge("down", 4)
			if c.Status.Replicas != 3 || !condIs(c, imv1.ConditionAvailable, metav1.ConditionTrue) {
				t.Fatalf("after scale-down: %+v", c.Status)
			}
			pvc := &corev1.PersistentVolumeClaim{}
			err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "data-down-3"}, pvc)
			gone := apierrors.IsNotFound(err) || (err == nil && pvc.DeletionTimestamp != nil)
			if policy == imv1.ReclaimRetain && (err != nil || pvc.DeletionTimestamp != nil) {
				t.Fatalf("Retain: claim of the drained node not kept: %v", err)
			}
			if policy == imv1.ReclaimDelete && !gone {
				t.Fatalf("Delete: claim of the drained node kept (err %v)", err)
			}
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "data-down-2"}, pvc); err != nil || pvc.DeletionTimestamp != nil {
				t.Fatalf("claim of a kept node touched: %v", err)
			}
		})
	}
}

func TestOperatorScaleDownWaitsForHealthyCluster(t *testing.T) {
	e := newEnv(t)
	e.bringUp("gate", 4)
	e.nodes.setUnderReplicated(1)
	e.modify("gate", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.reconcileN("gate", 2)
	if e.nodes.called("gate-3 POST " + adminapi.PathDrain) {
		t.Fatalf("drain started while a shard is under-replicated")
	}
	c := e.get("gate")
	if !condIs(c, imv1.ConditionProgressing, metav1.ConditionTrue) || c.Status.CurrentOperation == nil {
		t.Fatalf("waiting scale-down not reported: %+v", c.Status)
	}
	e.nodes.setUnderReplicated()
	e.reconcile("gate")
	if e.nodes.state("gate-3") != adminapi.StateDraining {
		t.Fatalf("drain not started once healthy")
	}
}

func TestOperatorScaleDownAdminAPIDownNeverSkipsDrain(t *testing.T) {
	e := newEnv(t)
	e.bringUp("adm", 4)
	e.nodes.update("adm-3", func(n *fakeNode) { n.failing = true })
	e.modify("adm", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.reconcileN("adm", 3)
	if e.stsReplicas("adm") != 4 {
		t.Fatalf("shrank without draining")
	}
	c := e.get("adm")
	if d := cond(c, imv1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != "AdminAPIUnavailable" {
		t.Fatalf("Degraded %+v", d)
	}
	if c.Status.Phase != imv1.PhaseDegraded {
		t.Fatalf("phase %s", c.Status.Phase)
	}
	// The node comes back: the drain proceeds.
	e.nodes.update("adm-3", func(n *fakeNode) { n.failing = false })
	e.reconcile("adm")
	if e.nodes.state("adm-3") != adminapi.StateDraining {
		t.Fatalf("drain not started after recovery")
	}
	if c := e.get("adm"); !condIs(c, imv1.ConditionDegraded, metav1.ConditionFalse) {
		t.Fatalf("still Degraded after recovery: %+v", cond(c, imv1.ConditionDegraded))
	}
}

func TestOperatorScaleDownReversal(t *testing.T) {
	e := newEnv(t)
	e.bringUp("rev", 4)
	e.modify("rev", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.reconcileN("rev", 2)
	if e.nodes.state("rev-3") != adminapi.StateDraining {
		t.Fatalf("drain not started")
	}
	// The user changes their mind mid-drain.
	e.modify("rev", func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	e.reconcile("rev")
	if !e.nodes.called("rev-3 DELETE "+adminapi.PathDrain) || e.nodes.state("rev-3") != adminapi.StateActive {
		t.Fatalf("drain not cancelled: state %s", e.nodes.state("rev-3"))
	}
	c := e.converge("rev", 4)
	if e.stsReplicas("rev") != 4 || c.Status.ReadyReplicas != 4 {
		t.Fatalf("after reversal %+v", c.Status)
	}

	// A drain that already finished (node left) is reversed too: the node rejoins.
	e.modify("rev", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.reconcileN("rev", 2)
	e.nodes.finishDrain("rev-3")
	e.nodes.setUnderReplicated(2) // keeps the operator from shrinking before the reversal
	e.reconcile("rev")
	e.modify("rev", func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	e.nodes.setUnderReplicated()
	e.reconcile("rev")
	if e.nodes.state("rev-3") != adminapi.StateJoining {
		t.Fatalf("left node did not rejoin: %s", e.nodes.state("rev-3"))
	}
	e.converge("rev", 4)
}

func TestOperatorScaleUpReversal(t *testing.T) {
	e := newEnv(t)
	e.bringUp("uprev", 3)
	e.modify("uprev", func(c *imv1.IMCluster) { c.Spec.Replicas = 5 })
	e.reconcileN("uprev", 2)
	if e.stsReplicas("uprev") != 4 {
		t.Fatalf("replicas %d, want 4 while uprev-3 joins", e.stsReplicas("uprev"))
	}
	// Back to 3 while uprev-3 is still joining: it is drained, not dropped.
	e.modify("uprev", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.reconcileN("uprev", 2)
	if e.nodes.state("uprev-3") != adminapi.StateDraining || e.stsReplicas("uprev") != 4 {
		t.Fatalf("joining node not drained first: %s, replicas %d", e.nodes.state("uprev-3"), e.stsReplicas("uprev"))
	}
	e.nodes.finishDrain("uprev-3")
	c := e.converge("uprev", 4)
	if e.stsReplicas("uprev") != 3 || c.Status.Replicas != 3 {
		t.Fatalf("after reversal %+v", c.Status)
	}
}
