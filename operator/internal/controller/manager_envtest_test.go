//go:build envtest

package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// startManager runs the controller in a real manager watching e.ns and
// returns a function that stops it and waits for it to exit.
func (e *env) startManager() (stop func()) {
	e.t.Helper()
	mgr, err := ctrl.NewManager(testCfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{e.ns: {}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		e.t.Fatalf("manager: %v", err)
	}
	r := e.newReconciler(mgr.GetClient())
	r.Recorder = mgr.GetEventRecorder("imcluster-operator")
	if err := r.SetupWithManager(mgr); err != nil {
		e.t.Fatalf("setup: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("manager: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// playKubelet does one kubelet pass and catches every node up.
func (e *env) playKubelet(name string, catchUp bool) {
	e.kubelet(name)
	if catchUp && e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &appsv1.StatefulSet{}) == nil {
		for o := range e.stsReplicas(name) {
			e.nodes.catchUp(fmt.Sprintf("%s-%d", name, o))
		}
	}
}

// waitFor polls (playing kubelet on each round) until fn holds on the
// IMCluster. The manager reconciles on its own.
func (e *env) waitFor(name string, catchUp bool, what string, fn func(c *imv1.IMCluster) bool) {
	e.t.Helper()
	checkFor(e.t, 60*time.Second, 50*time.Millisecond, func() error {
		e.playKubelet(name, catchUp)
		c := e.get(name)
		if fn(c) {
			return nil
		}
		return fmt.Errorf("%s: status %+v, nodes %s", what, c.Status, e.nodes)
	})
}

// TestOperatorManagerKubectlWait checks what `kubectl wait
// --for=condition=Available` and `--for=condition=Progressing=false` rely on:
// conditions carrying the current observedGeneration, through a real manager
// (watches, events, requeues).
func TestOperatorManagerKubectlWait(t *testing.T) {
	e := newEnv(t)
	e.startManager()
	e.create(e.cluster("kw", 3))
	e.waitFor("kw", true, "Available", func(c *imv1.IMCluster) bool {
		return condIs(c, imv1.ConditionAvailable, metav1.ConditionTrue) &&
			condIs(c, imv1.ConditionProgressing, metav1.ConditionFalse) && c.Status.ReadyReplicas == 3
	})
	// A spec change makes the old conditions stale until the operator has
	// observed the new generation.
	e.modify("kw", func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	e.waitFor("kw", true, "scaled to 4", func(c *imv1.IMCluster) bool {
		return condIs(c, imv1.ConditionProgressing, metav1.ConditionFalse) && c.Status.ReadyReplicas == 4
	})

	events := &eventsv1.EventList{}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if err := e.c.List(e.ctx, events, client.InNamespace(e.ns)); err != nil {
			return err
		}
		reasons := map[string]bool{}
		for _, ev := range events.Items {
			reasons[ev.Reason] = true
		}
		for _, want := range []string{"StatefulSetCreated", "ScalingUp"} {
			if !reasons[want] {
				return fmt.Errorf("no %s event among %v", want, reasons)
			}
		}
		return nil
	})
}

// TestOperatorManagerRestartMidScaleDown stops the operator after it started
// a drain and starts a new one: the new operator resumes from the StatefulSet
// and the node's own drain state, not from memory.
func TestOperatorManagerRestartMidScaleDown(t *testing.T) {
	e := newEnv(t)
	stop := e.startManager()
	e.create(e.cluster("rs", 4))
	e.waitFor("rs", true, "4 nodes", func(c *imv1.IMCluster) bool {
		return condIs(c, imv1.ConditionProgressing, metav1.ConditionFalse) && c.Status.ReadyReplicas == 4
	})
	e.modify("rs", func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	e.waitFor("rs", false, "drain started", func(c *imv1.IMCluster) bool {
		return e.nodes.state("rs-3") == adminapi.StateDraining
	})
	stop()

	// While no operator runs, the drain completes.
	e.nodes.finishDrain("rs-3")
	if e.stsReplicas("rs") != 4 {
		t.Fatalf("shrank before the drain finished")
	}

	e.startManager()
	e.waitFor("rs", true, "scaled down", func(c *imv1.IMCluster) bool {
		return c.Status.Replicas == 3 && condIs(c, imv1.ConditionProgressing, metav1.ConditionFalse)
	})
	if e.stsReplicas("rs") != 3 {
		t.Fatalf("replicas %d", e.stsReplicas("rs"))
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "data-rs-3"}, pvc); err != nil {
		t.Fatalf("Retain: claim of the drained node: %v", err)
	}
}
