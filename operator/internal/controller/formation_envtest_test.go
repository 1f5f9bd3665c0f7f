//go:build envtest

package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The first pod of a brand-new cluster bootstraps it, once: the formation
// ConfigMap names it until it is ready, then names nobody, and the pod
// template (so no pod restarts) stays the same throughout.
func TestOperatorBootstrapsOnlyABrandNewCluster(t *testing.T) {
	e := newEnv(t)
	c := e.create(e.cluster("form", 3))
	e.reconcile("form")

	formation := func() map[string]string {
		t.Helper()
		cm := &corev1.ConfigMap{}
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "form-formation"}, cm); err != nil {
			t.Fatalf("formation configmap: %v", err)
		}
		return cm.Data
	}
	if got := formation()[formationKey]; got != "form-0" {
		t.Fatalf("formation configmap names %q while bootstrapping, want form-0", got)
	}
	if got := e.get("form"); !condIs(got, ConditionFormed, metav1.ConditionFalse) {
		t.Fatalf("Formed condition while bootstrapping: %+v", cond(got, ConditionFormed))
	}
	sts := e.sts("form")
	hash := sts.Spec.Template.Annotations[AnnotationTemplateHash]
	env := map[string]corev1.EnvVar{}
	for _, v := range sts.Spec.Template.Spec.Containers[0].Env {
		env[v.Name] = v
	}
	if v := env["IMNODE_CLUSTER_ID"]; v.Value == "" || v.Value != string(c.UID) {
		t.Fatalf("IMNODE_CLUSTER_ID = %+v, want the IMCluster's UID %s", v, c.UID)
	}
	ref := env["IMNODE_BOOTSTRAP_NODE"].ValueFrom
	if ref == nil || ref.ConfigMapKeyRef == nil || ref.ConfigMapKeyRef.Name != "form-formation" ||
		ref.ConfigMapKeyRef.Key != formationKey || ref.ConfigMapKeyRef.Optional == nil || !*ref.ConfigMapKeyRef.Optional {
		t.Fatalf("IMNODE_BOOTSTRAP_NODE = %+v, want the optional formation configmap key", env["IMNODE_BOOTSTRAP_NODE"])
	}

	got := e.converge("form", 16)
	if !condIs(got, ConditionFormed, metav1.ConditionTrue) {
		t.Fatalf("Formed condition after the first node was ready: %+v", cond(got, ConditionFormed))
	}
	if v, ok := formation()[formationKey]; ok {
		t.Fatalf("formation configmap still names %q after the cluster formed", v)
	}
	if h := e.sts("form").Spec.Template.Annotations[AnnotationTemplateHash]; h != hash {
		t.Fatalf("template hash changed from %s to %s: formation rolled the pods", hash, h)
	}
	// Formed stays: the first pod going unready later does not bootstrap
	// again.
	e.setPodStatus("form-0", false, "")
	e.reconcile("form")
	if v, ok := formation()[formationKey]; ok || !condIs(e.get("form"), ConditionFormed, metav1.ConditionTrue) {
		t.Fatalf("after form-0 went unready: formation names %q, Formed %+v", v, cond(e.get("form"), ConditionFormed))
	}
}

// A cluster an older operator reconciled (status conditions but no Formed)
// never bootstraps.
func TestOperatorExistingClusterNeverBootstraps(t *testing.T) {
	e := newEnv(t)
	e.bringUp("old", 3)
	c := e.get("old")
	meta := c.Status.Conditions[:0]
	for _, cd := range c.Status.Conditions {
		if cd.Type != ConditionFormed {
			meta = append(meta, cd)
		}
	}
	c.Status.Conditions = meta
	if err := e.c.Status().Update(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	e.setPodStatus("old-0", false, "")
	e.reconcile("old")
	cm := &corev1.ConfigMap{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "old-formation"}, cm); err != nil {
		t.Fatal(err)
	}
	if v, ok := cm.Data[formationKey]; ok {
		t.Fatalf("an existing cluster's formation configmap names %q", v)
	}
	if got := cond(e.get("old"), ConditionFormed); got.Status != metav1.ConditionTrue || got.Reason != "Existing" {
		t.Fatalf("Formed = %+v, want True/Existing", got)
	}
}
