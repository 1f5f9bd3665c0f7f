//go:build envtest

package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// restartedPods returns the pods that run the current template.
func (e *env) updatedPods(name string, n int32) []string {
	e.t.Helper()
	want := e.sts(name).Spec.Template.Annotations[AnnotationTemplateHash]
	var out []string
	for o := range n {
		pn := podName(&imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Name: name}}, o)
		if p := e.pod(pn); p != nil && p.Annotations[AnnotationTemplateHash] == want {
			out = append(out, pn)
		}
	}
	return out
}

func TestOperatorRollingUpgradeOnePodAtATime(t *testing.T) {
	e := newEnv(t)
	e.bringUp("roll", 3)
	e.modify("roll", func(c *imv1.IMCluster) { c.Spec.Version = "1.1.0" })

	// Highest ordinal first, one pod per step, each gated on the previous one
	// being ready and caught up.
	for i, pod := range []string{"roll-2", "roll-1", "roll-0"} {
		e.reconcile("roll")
		if p := e.pod(pod); p != nil {
			t.Fatalf("step %d: %s not restarted", i, pod)
		}
		c := e.get("roll")
		if op := c.Status.CurrentOperation; op == nil || op.Type != imv1.OperationUpgrade || op.Pod != pod {
			t.Fatalf("step %d: operation %+v", i, op)
		}
		if c.Status.Phase != imv1.PhaseUpgrading {
			t.Fatalf("step %d: phase %s", i, c.Status.Phase)
		}
		e.kubelet("roll") // recreated on the new template, node catching up
		if got := len(e.updatedPods("roll", 3)); got != i+1 {
			t.Fatalf("step %d: %d pods updated", i, got)
		}
		e.reconcileN("roll", 2)
		if got := len(e.updatedPods("roll", 3)); got != i+1 {
			t.Fatalf("step %d: restarted another pod while %s catches up (%d updated)", i, pod, got)
		}
		e.nodes.catchUp(pod)
	}
	c := e.converge("roll", 4)
	if c.Status.CurrentVersion != "1.1.0" || c.Status.UpdatedReplicas != 3 {
		t.Fatalf("after upgrade %+v", c.Status)
	}
}

func TestOperatorRollingUpgradeWaitsForReplication(t *testing.T) {
	e := newEnv(t)
	e.bringUp("urep", 3)
	e.nodes.setUnderReplicated(3)
	e.modify("urep", func(c *imv1.IMCluster) { c.Spec.Version = "1.1.0" })
	e.reconcileN("urep", 3)
	if got := len(e.updatedPods("urep", 3)); got != 0 {
		t.Fatalf("restarted %d pods while a shard is under-replicated", got)
	}
	if c := e.get("urep"); c.Status.CurrentOperation == nil || c.Status.Shards.UnderReplicated != 1 {
		t.Fatalf("status %+v", c.Status)
	}
	e.nodes.setUnderReplicated()
	e.reconcile("urep")
	if e.pod("urep-2") != nil {
		t.Fatalf("not restarted once replication healed")
	}
}

func TestOperatorRollingUpgradeStuckPodIsDegraded(t *testing.T) {
	e := newEnv(t)
	e.bringUp("stuck", 3)
	e.modify("stuck", func(c *imv1.IMCluster) { c.Spec.Version = "9.9.9-broken" })
	e.reconcile("stuck")
	e.nodes.stop("stuck-2")
	// The new pod crash-loops: never ready, its node never starts.
	e.createPod(e.sts("stuck"), "stuck-2", false)
	e.setPodStatus("stuck-2", false, "CrashLoopBackOff")
	for range 3 {
		e.reconcile("stuck")
	}
	c := e.get("stuck")
	d := cond(c, imv1.ConditionDegraded)
	if d.Status != metav1.ConditionTrue || d.Reason != "PodStuck" || d.ObservedGeneration != c.Generation {
		t.Fatalf("Degraded %+v", d)
	}
	if e.pod("stuck-1") == nil || e.pod("stuck-0") == nil || len(e.updatedPods("stuck", 3)) != 1 {
		t.Fatalf("restarted the next pod while stuck-2 is stuck")
	}
	// Rolling back to the old version: the stuck pod is on a stale template
	// now and not ready; the operator still does not touch the healthy ones,
	// and the user (or kubelet) recreating it heals the cluster.
	e.modify("stuck", func(c *imv1.IMCluster) { c.Spec.Version = "1.0.0" })
	e.reconcile("stuck")
	if e.pod("stuck-1") == nil || e.pod("stuck-0") == nil {
		t.Fatalf("touched healthy pods during rollback")
	}
	if err := e.c.Delete(e.ctx, e.pod("stuck-2")); err != nil {
		t.Fatalf("delete stuck pod: %v", err)
	}
	c = e.converge("stuck", 6)
	if c.Status.CurrentVersion != "1.0.0" || !condIs(c, imv1.ConditionDegraded, metav1.ConditionFalse) {
		t.Fatalf("after rollback %+v", c.Status)
	}
}
