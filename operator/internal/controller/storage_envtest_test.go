//go:build envtest

package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

func TestOperatorStorageGrowsClaims(t *testing.T) {
	e := newEnv(t)
	class := e.ns + "-expandable"
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: "example.com/test",
		AllowVolumeExpansion: ptr.To(true)}
	if err := e.c.Create(e.ctx, sc); err != nil {
		t.Fatalf("storage class: %v", err)
	}
	e.bringUp("st", 3, func(c *imv1.IMCluster) { c.Spec.Storage.StorageClassName = ptr.To(class) })
	// Only bound claims can grow: play the volume binder.
	for _, pn := range []string{"st-0", "st-1", "st-2"} {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "data-" + pn}, pvc); err != nil {
			t.Fatalf("claim: %v", err)
		}
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}
		if err := e.c.Status().Update(e.ctx, pvc); err != nil {
			t.Fatalf("bind claim: %v", err)
		}
	}
	e.modify("st", func(c *imv1.IMCluster) { c.Spec.Storage.Size = ptr.To(resource.MustParse("25Gi")) })
	e.reconcile("st")
	for _, pn := range []string{"st-0", "st-1", "st-2"} {
		pvc := &corev1.PersistentVolumeClaim{}
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "data-" + pn}, pvc); err != nil {
			t.Fatalf("claim: %v", err)
		}
		if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "25Gi" {
			t.Fatalf("claim %s requests %s, want 25Gi", pvc.Name, got.String())
		}
	}
	c := e.get("st")
	if d := cond(c, imv1.ConditionDegraded); d.Status != metav1.ConditionFalse {
		t.Fatalf("Degraded %+v", d)
	}
	// Growing storage does not restart pods.
	if got := len(e.updatedPods("st", 3)); got != 3 {
		t.Fatalf("%d of 3 pods on the current template after a storage change", got)
	}
}
