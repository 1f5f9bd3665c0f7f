//go:build envtest

package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

var (
	testCfg    *rest.Config
	testScheme = runtime.NewScheme()
	nsCounter  atomic.Int32
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(imv1.AddToScheme(testScheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(testScheme))
	logf.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test-operator` (it builds kube-apiserver and etcd)")
		os.Exit(1)
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	cfg, err := te.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start envtest: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "envtest control plane started in %s\n", time.Since(start).Round(time.Millisecond))
	testCfg = cfg
	code := m.Run()
	if err := te.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
	}
	os.Exit(code)
}

const testToken = "test-admin-token"

// env is one test's namespace, admin API twin and reconciler. Tests drive
// reconciles by hand (r.Reconcile) so that every step is observable; the
// manager tests start a real manager instead.
type env struct {
	t     *testing.T
	ctx   context.Context
	c     client.Client
	ns    string
	nodes *fakeNodes
	r     *IMClusterReconciler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, err := client.New(testCfg, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	e := &env{t: t, ctx: t.Context(), c: c, ns: fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(t.Name()[len("TestOperator"):]))}
	if len(e.ns) > 60 {
		e.ns = e.ns[:60]
	}
	e.ns = strings.Trim(strings.ReplaceAll(e.ns, "/", "-"), "-")
	if err := c.Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	e.nodes = newFakeNodes(t, testToken)
	e.r = e.newReconciler(c)
	return e
}

func (e *env) newReconciler(c client.Client) *IMClusterReconciler {
	return &IMClusterReconciler{Client: c, Config: Config{
		AdminURL: e.nodes.url, PollInterval: 100 * time.Millisecond, ResyncInterval: time.Second,
	}}
}

// cluster returns a valid IMCluster fixture using a fixed admin token Secret.
func (e *env) cluster(name string, replicas int32, mutate ...func(*imv1.IMCluster)) *imv1.IMCluster {
	c := &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: imv1.IMClusterSpec{
			Replicas: replicas, Version: "1.0.0", Shards: 16, ReplicationFactor: 3, WriteQuorum: 2,
			AdminTokenSecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-token"}, Key: "token"},
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

// create creates the token Secret and the IMCluster.
func (e *env) create(c *imv1.IMCluster) *imv1.IMCluster {
	e.t.Helper()
	if ref := c.Spec.AdminTokenSecretRef; ref != nil {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: e.ns},
			Data: map[string][]byte{ref.Key: []byte(testToken)}}
		if err := e.c.Create(e.ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			e.t.Fatalf("create token secret: %v", err)
		}
	}
	if err := e.c.Create(e.ctx, c); err != nil {
		e.t.Fatalf("create IMCluster: %v", err)
	}
	return c
}

func (e *env) get(name string) *imv1.IMCluster {
	e.t.Helper()
	c := &imv1.IMCluster{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, c); err != nil {
		e.t.Fatalf("get IMCluster: %v", err)
	}
	return c
}

// modify applies fn to the IMCluster's spec/metadata, retrying on conflict.
func (e *env) modify(name string, fn func(*imv1.IMCluster)) {
	e.t.Helper()
	for range 10 {
		c := e.get(name)
		fn(c)
		err := e.c.Update(e.ctx, c)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			e.t.Fatalf("update IMCluster: %v", err)
		}
	}
	e.t.Fatalf("update IMCluster: conflicts")
}

func (e *env) reconcile(name string) ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(e.ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: e.ns, Name: name}})
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (e *env) sts(name string) *appsv1.StatefulSet {
	e.t.Helper()
	s := &appsv1.StatefulSet{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, s); err != nil {
		e.t.Fatalf("get StatefulSet: %v", err)
	}
	return s
}

func (e *env) stsReplicas(name string) int32 {
	e.t.Helper()
	return ptr.Deref(e.sts(name).Spec.Replicas, -1)
}

func (e *env) pod(name string) *corev1.Pod {
	e.t.Helper()
	p := &corev1.Pod{}
	err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, p)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("get pod: %v", err)
	}
	return p
}

// kubelet plays the StatefulSet controller and kubelet: it creates the pods
// (and claims) of missing ordinals from the current template, starts their
// node processes in the admin twin, marks them ready, and deletes pods of
// ordinals beyond the StatefulSet's replicas. Pods are never bound to a node,
// so the API server deletes them at once.
func (e *env) kubelet(name string) {
	e.t.Helper()
	sts := &appsv1.StatefulSet{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, sts); apierrors.IsNotFound(err) {
		return // not created yet
	} else if err != nil {
		e.t.Fatalf("get StatefulSet: %v", err)
	}
	replicas := ptr.Deref(sts.Spec.Replicas, 0)
	pods := &corev1.PodList{}
	if err := e.c.List(e.ctx, pods, client.InNamespace(e.ns), client.MatchingLabels(sts.Spec.Selector.MatchLabels)); err != nil {
		e.t.Fatalf("list pods: %v", err)
	}
	have := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		have[p.Name] = true
		var o int32
		if _, err := fmt.Sscanf(strings.TrimPrefix(p.Name, sts.Name+"-"), "%d", &o); err == nil && o >= replicas {
			if err := e.c.Delete(e.ctx, p); client.IgnoreNotFound(err) != nil {
				e.t.Fatalf("delete pod: %v", err)
			}
			e.nodes.stop(p.Name)
		}
	}
	for o := range replicas {
		pn := fmt.Sprintf("%s-%d", sts.Name, o)
		if have[pn] {
			continue
		}
		e.createPod(sts, pn, true)
	}
}

func (e *env) createPod(sts *appsv1.StatefulSet, pn string, ready bool) {
	e.t.Helper()
	tmpl := sts.Spec.Template.DeepCopy()
	p := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	p.Name, p.Namespace = pn, e.ns
	p.Spec.Hostname, p.Spec.Subdomain = pn, sts.Spec.ServiceName
	for _, vct := range sts.Spec.VolumeClaimTemplates { // as the StatefulSet controller does
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: vct.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: vct.Name + "-" + pn}}})
	}
	if err := e.c.Create(e.ctx, p); err != nil {
		e.t.Fatalf("create pod %s: %v", pn, err)
	}
	for _, vct := range sts.Spec.VolumeClaimTemplates {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: vct.Name + "-" + pn, Namespace: e.ns, Labels: vct.Labels},
			Spec:       vct.Spec,
		}
		if err := e.c.Create(e.ctx, pvc); err != nil && !apierrors.IsAlreadyExists(err) {
			e.t.Fatalf("create claim: %v", err)
		}
	}
	e.setPodStatus(pn, ready, "")
	if ready {
		e.nodes.start(pn, tmpl.Annotations[AnnotationVersion])
	}
}

// setPodStatus marks a pod (not) ready; waiting, if set, is the container's
// waiting reason.
func (e *env) setPodStatus(pn string, ready bool, waiting string) {
	e.t.Helper()
	p := e.pod(pn)
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "127.0.0.1"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	cs := corev1.ContainerStatus{Name: containerName, Ready: ready, Image: p.Spec.Containers[0].Image}
	if waiting != "" {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting, Message: "back-off restarting failed container"}
	} else {
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	if err := e.c.Status().Update(e.ctx, p); err != nil {
		e.t.Fatalf("update pod status %s: %v", pn, err)
	}
}

// converge runs reconcile, kubelet and catch-up until Progressing is False
// with the current generation, or fails after max rounds.
func (e *env) converge(name string, maxRounds int) *imv1.IMCluster {
	e.t.Helper()
	for range maxRounds {
		e.reconcile(name)
		e.kubelet(name)
		for o := range e.stsReplicas(name) {
			e.nodes.catchUp(fmt.Sprintf("%s-%d", name, o))
		}
		c := e.get(name)
		if condIs(c, imv1.ConditionProgressing, metav1.ConditionFalse) && c.Status.ObservedGeneration == c.Generation {
			return c
		}
	}
	c := e.get(name)
	e.t.Fatalf("no convergence after %d rounds: status %+v, nodes %s", maxRounds, c.Status, e.nodes)
	return nil
}

func condIs(c *imv1.IMCluster, typ string, status metav1.ConditionStatus) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == typ {
			return cond.Status == status && cond.ObservedGeneration == c.Generation
		}
	}
	return false
}

func cond(c *imv1.IMCluster, typ string) metav1.Condition {
	for _, cd := range c.Status.Conditions {
		if cd.Type == typ {
			return cd
		}
	}
	return metav1.Condition{}
}

// checkFor polls fn until it returns nil or the deadline passes.
func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("timed out after %s: %v", total, err)
}
