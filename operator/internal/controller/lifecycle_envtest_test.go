//go:build envtest

package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

func TestOperatorPause(t *testing.T) {
	for _, how := range []string{"spec", "annotation"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			e.bringUp("p", 3)
			hash := e.sts("p").Spec.Template.Annotations[AnnotationTemplateHash]
			e.modify("p", func(c *imv1.IMCluster) {
				if how == "spec" {
					c.Spec.Paused = true
				} else {
					c.Annotations = map[string]string{imv1.PausedAnnotation: "true"}
				}
				c.Spec.Version = "2.0.0"
				c.Spec.Replicas = 4
			})
			e.reconcileN("p", 3)
			if e.stsReplicas("p") != 3 || e.sts("p").Spec.Template.Annotations[AnnotationTemplateHash] != hash {
				t.Fatalf("paused cluster was changed")
			}
			c := e.get("p")
			if !condIs(c, imv1.ConditionReconciliationPaused, metav1.ConditionTrue) || c.Status.Phase != imv1.PhasePaused ||
				c.Status.ReadyReplicas != 3 {
				t.Fatalf("paused status %+v", c.Status)
			}
			e.modify("p", func(c *imv1.IMCluster) { c.Spec.Paused = false; c.Annotations = nil })
			c = e.converge("p", 20)
			if e.stsReplicas("p") != 4 || c.Status.CurrentVersion != "2.0.0" ||
				!condIs(c, imv1.ConditionReconciliationPaused, metav1.ConditionFalse) {
				t.Fatalf("after unpause %+v", c.Status)
			}
		})
	}
}

func TestOperatorDeletion(t *testing.T) {
	for _, policy := range []imv1.ReclaimPolicy{imv1.ReclaimRetain, imv1.ReclaimDelete} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			e.bringUp("del", 3, func(c *imv1.IMCluster) { c.Spec.Storage.ReclaimPolicy = policy })
			if err := e.c.Delete(e.ctx, e.get("del")); err != nil {
				t.Fatalf("delete: %v", err)
			}
			e.reconcile("del")
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "del"}, &imv1.IMCluster{}); !apierrors.IsNotFound(err) {
				t.Fatalf("IMCluster not gone after the finalizer ran: %v", err)
			}
			pvcs := &corev1.PersistentVolumeClaimList{}
			if err := e.c.List(e.ctx, pvcs, client.InNamespace(e.ns)); err != nil {
				t.Fatalf("list claims: %v", err)
			}
			live := 0
			for _, p := range pvcs.Items {
				if p.DeletionTimestamp == nil {
					live++
				}
			}
			if policy == imv1.ReclaimRetain && live != 3 {
				t.Fatalf("Retain: %d of 3 claims kept", live)
			}
			if policy == imv1.ReclaimDelete && live != 0 {
				t.Fatalf("Delete: %d claims left", live)
			}
			// The StatefulSet is removed by the garbage collector through its
			// owner reference (no garbage collector runs under envtest).
			if refs := e.sts("del").OwnerReferences; len(refs) != 1 || refs[0].Kind != "IMCluster" {
				t.Fatalf("owner references %+v", refs)
			}
			// A reconcile of a deleted object is a no-op.
			e.reconcile("del")
		})
	}
}

func TestOperatorMissingAdminTokenIsReported(t *testing.T) {
	e := newEnv(t)
	c := e.cluster("notok", 3)
	if err := e.c.Create(e.ctx, c); err != nil { // no Secret
		t.Fatalf("create: %v", err)
	}
	e.reconcile("notok")
	c = e.get("notok")
	if d := cond(c, imv1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != "AdminTokenMissing" {
		t.Fatalf("Degraded %+v", d)
	}
	// No step is taken without a token to reach the nodes with.
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "notok"}, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
		t.Fatalf("StatefulSet created without an admin token: %v", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "notok-token", Namespace: e.ns},
		Data: map[string][]byte{"token": []byte(testToken)}}
	if err := e.c.Create(e.ctx, secret); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	e.reconcile("notok")
	if e.stsReplicas("notok") != 1 {
		t.Fatalf("StatefulSet not created once the token exists")
	}
}
