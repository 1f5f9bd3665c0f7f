//go:build envtest

package controller

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// TestOperatorNetworkPolicy: rendered by default and accepted by the API
// server; gossip and transport only from the cluster's pods, admin only from
// the operator and the monitoring peers, client open; turned off by
// spec.security.networkPolicy.enabled=false.
func TestOperatorNetworkPolicy(t *testing.T) {
	e := newEnv(t)
	e.r.Config.OperatorNamespace = "imcluster-system"
	e.r.Config.OperatorPodLabels = map[string]string{"app.kubernetes.io/name": "imcluster", "app.kubernetes.io/instance": "imc"}
	prometheus := networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "monitoring"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
	}
	e.create(e.cluster("np", 3, func(c *imv1.IMCluster) {
		c.Spec.Security.NetworkPolicy.MonitoringFrom = []networkingv1.NetworkPolicyPeer{prometheus}
	}))
	e.reconcile("np")

	np := &networkingv1.NetworkPolicy{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "np"}, np); err != nil {
		t.Fatalf("NetworkPolicy not rendered by default: %v", err)
	}
	if refs := np.GetOwnerReferences(); len(refs) != 1 || refs[0].Name != "np" {
		t.Fatalf("owner references %+v", refs)
	}
	sel := selectorLabels(e.get("np"))
	if !equalMaps(np.Spec.PodSelector.MatchLabels, sel) || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Fatalf("policy selects %v (types %v), want the node pods %v, ingress", np.Spec.PodSelector.MatchLabels, np.Spec.PolicyTypes, sel)
	}
	// Who may reach each node port, as the API server stored it.
	from := map[string][]networkingv1.NetworkPolicyPeer{}
	open := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			key := fmt.Sprintf("%d/%s", p.Port.IntVal, *p.Protocol)
			if len(rule.From) == 0 {
				open[key] = true
			}
			from[key] = append(from[key], rule.From...)
		}
	}
	if len(open) != 1 || !open["8080/TCP"] {
		t.Fatalf("ports open to everyone: %v, want only the client port 8080/TCP", open)
	}
	for _, key := range []string{"7946/TCP", "7946/UDP", "7947/TCP"} {
		peers := from[key]
		if len(peers) != 1 || peers[0].NamespaceSelector != nil || !equalMaps(peers[0].PodSelector.MatchLabels, sel) {
			t.Errorf("%s admits %+v, want only this cluster's pods", key, peers)
		}
	}
	admin := from["8081/TCP"]
	if len(admin) != 2 {
		t.Fatalf("admin port admits %+v, want the operator and prometheus", admin)
	}
	op := admin[0]
	if op.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "imcluster-system" ||
		!equalMaps(op.PodSelector.MatchLabels, e.r.Config.OperatorPodLabels) {
		t.Errorf("admin port operator peer %+v", op)
	}
	if admin[1].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "monitoring" ||
		admin[1].PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
		t.Errorf("admin port monitoring peer %+v", admin[1])
	}

	e.modify("np", func(c *imv1.IMCluster) { c.Spec.Security.NetworkPolicy.Enabled = new(false) })
	e.reconcile("np")
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "np"}, np); !apierrors.IsNotFound(err) {
		t.Fatalf("NetworkPolicy after enabled=false: %v, want deleted", err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
