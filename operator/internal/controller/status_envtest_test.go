//go:build envtest

package controller

import (
	"fmt"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/api/meta"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// phaseLog records the phase after every reconcile and fails the test the
// first time a formed cluster reads Creating or its VERSION column is blank
// (every node runs 1.0.0 throughout).
type phaseLog struct {
	e      *env
	name   string
	phases []imv1.Phase
}

func (l *phaseLog) reconcile() *imv1.IMCluster {
	l.e.t.Helper()
	l.e.reconcile(l.name)
	c := l.e.get(l.name)
	if len(l.phases) == 0 || l.phases[len(l.phases)-1] != c.Status.Phase {
		l.phases = append(l.phases, c.Status.Phase)
	}
	if meta.IsStatusConditionTrue(c.Status.Conditions, ConditionFormed) {
		if c.Status.Phase == imv1.PhaseCreating {
			l.e.t.Fatalf("a formed cluster reads Creating (phases so far %v): status %+v", l.phases, c.Status)
		}
		if c.Status.CurrentVersion != "1.0.0" {
			l.e.t.Fatalf("currentVersion %q, want 1.0.0 on every node (phases so far %v), members %+v",
				c.Status.CurrentVersion, l.phases, c.Status.Members)
		}
	}
	return c
}

// step reconciles, runs the test kubelet and catches up the nodes of the
// given ordinals only, so that others stay joining or receiving.
func (l *phaseLog) step(catchUp ...int) *imv1.IMCluster {
	l.e.t.Helper()
	c := l.reconcile()
	l.e.kubelet(l.name)
	for _, o := range catchUp {
		l.e.nodes.catchUp(fmt.Sprintf("%s-%d", l.name, o))
	}
	return c
}

func (l *phaseLog) until(phase imv1.Phase, maxRounds int, catchUp func() []int) {
	l.e.t.Helper()
	for range maxRounds {
		if c := l.step(catchUp()...); c.Status.Phase == phase && condIs(c, "Progressing", "False") {
			return
		}
	}
	l.e.t.Fatalf("not %s after %d rounds: phases %v, nodes %s", phase, maxRounds, l.phases, l.e.nodes)
}

// A formed cluster is never Creating again, whatever is in flight: the end
// of a scale-up with a node still receiving, a removed pod still
// terminating after a scale-down, a pod deleted and recreated. Creating is
// only the time before the first node formed the cluster.
func TestOperatorPhaseTruthfulAfterFormation(t *testing.T) {
	e := newEnv(t)
	l := &phaseLog{e: e, name: "ph"}
	e.create(e.cluster("ph", 3))
	all := func() []int { return []int{0, 1, 2, 3, 4} }
	l.until(imv1.PhaseRunning, 20, all)
	if l.phases[0] != imv1.PhaseCreating || slices.Contains(l.phases[1:], imv1.PhaseCreating) {
		t.Fatalf("creation phases %v: want Creating first, then never again", l.phases)
	}

	// Scale up: each new node catches up only two rounds after it was
	// added, and the one before it keeps receiving meanwhile.
	l.phases = nil
	e.modify("ph", func(c *imv1.IMCluster) { c.Spec.Replicas = 5 })
	round := 0
	l.until(imv1.PhaseRunning, 30, func() []int {
		round++
		if round%3 != 0 {
			return nil
		}
		return all()
	})
	if !slices.Equal(l.phases, []imv1.Phase{imv1.PhaseScaling, imv1.PhaseRunning}) {
		t.Fatalf("scale-up phases %v, want Scaling then Running", l.phases)
	}

	// Scale down with the removed pods held terminating by a finalizer: the
	// end of the scale-down is Scaling, not Creating.
	for _, pn := range []string{"ph-3", "ph-4"} {
		p := e.pod(pn)
		p.Finalizers = append(p.Finalizers, "test.imcluster.io/hold")
		if err := e.c.Update(e.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	l.phases = nil
	e.modify("ph", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	// Each node's drain is one step: its start stays put while the step
	// lasts (whatever the number of reconciles) and is what the operator
	// exports for the IMDrainStuck alert. The clock moves 10 s a round.
	now := time.Now()
	e.r.Config.Now = func() time.Time { return now }
	started, seen := map[string]metav1.Time{}, map[string]int{}
	for range 30 {
		now = now.Add(10 * time.Second)
		c := l.step()
		if op := c.Status.CurrentOperation; op != nil && op.Type == imv1.OperationScaleDown {
			if op.StartedAt == nil {
				t.Fatalf("operation %+v without startedAt", op)
			}
			if first, ok := started[op.Pod]; ok && !first.Equal(op.StartedAt) {
				t.Fatalf("the scale-down step of %s started at %s, now reports %s", op.Pod, first, op.StartedAt)
			}
			started[op.Pod] = *op.StartedAt
			if got := gaugeValue(t, e.ns, "ph", "ScaleDown"); got != float64(op.StartedAt.Unix()) {
				t.Fatalf("exported start %v, status %s", got, op.StartedAt)
			}
			if seen[op.Pod]++; seen[op.Pod] >= 3 {
				e.nodes.finishDrain(op.Pod)
			}
		}
		if e.stsReplicas("ph") == 3 {
			break
		}
	}
	if len(started) != 2 || !started["ph-3"].After(started["ph-4"].Time) {
		t.Fatalf("scale-down steps started %v: want ph-4's, then ph-3's later", started)
	}
	if e.stsReplicas("ph") != 3 {
		t.Fatalf("not scaled down: phases %v, nodes %s", l.phases, e.nodes)
	}
	if c := l.step(); c.Status.Phase != imv1.PhaseScaling || e.pod("ph-4").DeletionTimestamp == nil {
		t.Fatalf("removed pods terminating: phase %s, want Scaling", c.Status.Phase)
	}
	for _, pn := range []string{"ph-3", "ph-4"} {
		p := e.pod(pn)
		p.Finalizers = nil
		if err := e.c.Update(e.ctx, p); err != nil {
			t.Fatal(err)
		}
		e.nodes.stop(pn)
	}
	l.until(imv1.PhaseRunning, 10, all)
	if !slices.Equal(l.phases, []imv1.Phase{imv1.PhaseScaling, imv1.PhaseRunning}) {
		t.Fatalf("scale-down phases %v, want Scaling then Running", l.phases)
	}

	// A pod deleted (its node down but in the roster) and recreated: the
	// cluster is Recovering until the node is back, and VERSION stays.
	l.phases = nil
	e.nodes.update("ph-1", func(n *fakeNode) { n.failing = true })
	if err := e.c.Delete(e.ctx, e.pod("ph-1")); err != nil {
		t.Fatal(err)
	}
	if c := l.reconcile(); c.Status.Phase != imv1.PhaseRecovering {
		t.Fatalf("pod deleted: phase %s, want Recovering", c.Status.Phase)
	}
	sts := e.sts("ph")
	e.createPod(sts, "ph-1", false)
	e.nodes.update("ph-1", func(n *fakeNode) { n.failing = true })
	c := l.reconcile()
	if c.Status.Phase != imv1.PhaseRecovering || c.Status.CurrentOperation != nil {
		t.Fatalf("pod recreated, not ready: phase %s operation %+v, want Recovering and no operation",
			c.Status.Phase, c.Status.CurrentOperation)
	}
	e.nodes.update("ph-1", func(n *fakeNode) { n.failing, n.state, n.receiving = false, adminapi.StateActive, 0 })
	e.setPodStatus("ph-1", true, "")
	l.until(imv1.PhaseRunning, 5, all)
	if !slices.Equal(l.phases, []imv1.Phase{imv1.PhaseRecovering, imv1.PhaseRunning}) {
		t.Fatalf("pod recreation phases %v, want Recovering then Running", l.phases)
	}

	// A scale-up whose new node is active in the roster (caught up) before
	// its pod's readiness probe passed is still Scaling, not Recovering.
	l.phases = nil
	e.modify("ph", func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	l.reconcile()
	e.createPod(e.sts("ph"), "ph-3", false)
	e.nodes.start("ph-3", "1.0.0")
	e.nodes.catchUp("ph-3")
	for range 3 {
		if c := l.reconcile(); c.Status.Phase != imv1.PhaseScaling {
			t.Fatalf("new node active, pod not ready yet: phase %s, want Scaling (phases %v)", c.Status.Phase, l.phases)
		}
	}
	e.setPodStatus("ph-3", true, "")
	l.until(imv1.PhaseRunning, 5, all)
}

// One failed admin poll does not blank the VERSION column: a node that does
// not answer counts with its pod's version, the one it reported last unless
// the pod was replaced on another version.
func TestOperatorVersionKeptWhenAPollFails(t *testing.T) {
	e := newEnv(t)
	e.bringUp("ver", 3)
	e.nodes.update("ver-2", func(n *fakeNode) { n.failing = true })
	e.reconcile("ver")
	c := e.get("ver")
	if c.Status.CurrentVersion != "1.0.0" || c.Status.Members[2].Version != "1.0.0" {
		t.Fatalf("ver-2 did not answer once: currentVersion %q, member %+v; want 1.0.0 kept",
			c.Status.CurrentVersion, c.Status.Members[2])
	}

	// Upgrade: ver-2 is replaced on 2.0.0 and has not answered yet, the
	// others report 1.0.0: the versions differ, so the column is empty.
	e.nodes.update("ver-2", func(n *fakeNode) { n.failing = false })
	e.modify("ver", func(c *imv1.IMCluster) { c.Spec.Version = "2.0.0" })
	for range 5 {
		e.reconcile("ver")
		if p := e.pod("ver-2"); p == nil || p.Annotations[AnnotationVersion] == "2.0.0" {
			break
		}
	}
	if p := e.pod("ver-2"); p != nil && p.Annotations[AnnotationVersion] != "2.0.0" {
		t.Fatalf("ver-2 not restarted on 2.0.0")
	}
	e.kubelet("ver")
	e.nodes.update("ver-2", func(n *fakeNode) { n.failing = true })
	e.reconcile("ver")
	c = e.get("ver")
	if got := c.Status.Members[2].Version; got != "2.0.0" || c.Status.CurrentVersion != "" {
		t.Fatalf("replaced ver-2 not answering: member version %q, currentVersion %q; want 2.0.0 and empty",
			got, c.Status.CurrentVersion)
	}
}

// gaugeValue reads the operator's operation start gauge of one cluster.
func gaugeValue(t *testing.T, ns, name, typ string) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := operationStarted.WithLabelValues(ns, name, typ).Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
