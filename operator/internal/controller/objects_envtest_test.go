//go:build envtest

package controller

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

func TestOperatorCreatesObjects(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("chat", 3, func(c *imv1.IMCluster) {
		c.Spec.AdminTokenSecretRef = nil // the operator makes one
		c.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
		c.Spec.Service.Annotations = map[string]string{"lb.example/internal": "true"}
		c.Spec.Service.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
		c.Spec.AppsSecretRef = &corev1.LocalObjectReference{Name: "apps"}
		c.Spec.ExtraConfig = map[string]string{"logLevel": "debug"}
	}))
	e.reconcile("chat")

	owned := func(o client.Object) {
		t.Helper()
		refs := o.GetOwnerReferences()
		if len(refs) != 1 || refs[0].Kind != "IMCluster" || refs[0].Name != "chat" || refs[0].Controller == nil || !*refs[0].Controller {
			t.Fatalf("%s %s: owner references %+v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), refs)
		}
	}
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: e.ns, Name: name} }

	// Admin token Secret, generated.
	secret := &corev1.Secret{}
	if err := e.c.Get(e.ctx, key("chat-admin-token"), secret); err != nil {
		t.Fatalf("admin token secret: %v", err)
	}
	owned(secret)
	if len(secret.Data["token"]) != 64 {
		t.Fatalf("token has %d bytes", len(secret.Data["token"]))
	}

	// ConfigMap.
	cm := &corev1.ConfigMap{}
	if err := e.c.Get(e.ctx, key("chat-config"), cm); err != nil {
		t.Fatalf("configmap: %v", err)
	}
	owned(cm)
	for _, want := range []string{`"shards": 16`, `"replicationFactor": 3`, `"writeQuorum": 2`, `"logLevel": "debug"`,
		`"appsFile": "/etc/imnode/apps/apps.json"`, `"join": "chat-peers.` + e.ns + `.svc:7946"`} {
		if !strings.Contains(cm.Data[configFileKey], want) {
			t.Fatalf("config lacks %s:\n%s", want, cm.Data[configFileKey])
		}
	}

	// Services.
	peers := &corev1.Service{}
	if err := e.c.Get(e.ctx, key("chat-peers"), peers); err != nil {
		t.Fatalf("peer service: %v", err)
	}
	owned(peers)
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses || len(peers.Spec.Ports) != 5 {
		t.Fatalf("peer service spec %+v", peers.Spec)
	}
	// Gossip on TCP and UDP, the data transport on the next port (TCP).
	peerPorts := map[string]string{}
	for _, p := range peers.Spec.Ports {
		peerPorts[p.Name] = fmt.Sprintf("%d/%s->%s", p.Port, p.Protocol, p.TargetPort.StrVal)
	}
	for name, want := range map[string]string{"gossip": "7946/TCP->gossip", "gossip-udp": "7946/UDP->gossip-udp",
		"transport": "7947/TCP->transport", "admin": "8081/TCP->admin", "client": "8080/TCP->client"} {
		if peerPorts[name] != want {
			t.Fatalf("peer service port %s = %q, want %q (all: %v)", name, peerPorts[name], want, peerPorts)
		}
	}
	svc := &corev1.Service{}
	if err := e.c.Get(e.ctx, key("chat"), svc); err != nil {
		t.Fatalf("client service: %v", err)
	}
	owned(svc)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].Port != 8080 ||
		svc.Annotations["lb.example/internal"] != "true" || svc.Spec.LoadBalancerSourceRanges[0] != "10.0.0.0/8" {
		t.Fatalf("client service %+v", svc)
	}

	// PodDisruptionBudget.
	pdb := &policyv1.PodDisruptionBudget{}
	if err := e.c.Get(e.ctx, key("chat"), pdb); err != nil {
		t.Fatalf("pdb: %v", err)
	}
	owned(pdb)
	if pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("pdb maxUnavailable %v", pdb.Spec.MaxUnavailable)
	}

	// StatefulSet: starts with one node.
	sts := e.sts("chat")
	owned(sts)
	if *sts.Spec.Replicas != 1 || sts.Spec.ServiceName != "chat-peers" ||
		sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType ||
		sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Fatalf("statefulset spec %+v", sts.Spec)
	}
	if vct := sts.Spec.VolumeClaimTemplates; len(vct) != 1 || vct[0].Spec.Resources.Requests.Storage().String() != "10Gi" {
		t.Fatalf("volume claim templates %+v", vct)
	}
	tmpl := sts.Spec.Template
	if tmpl.Annotations[AnnotationConfigHash] != hashOf(cm.Data) || tmpl.Annotations[AnnotationTemplateHash] == "" {
		t.Fatalf("template annotations %v", tmpl.Annotations)
	}
	ctr := tmpl.Spec.Containers[0]
	if ctr.Image != "imcluster/imnode:1.0.0" || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		ctr.ReadinessProbe.HTTPGet.Port.StrVal != "admin" || ctr.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("container %+v", ctr)
	}
	if !slices.Contains(ctr.Args, "$(POD_NAME)") {
		t.Fatalf("node id is not the pod name: %v", ctr.Args)
	}
	ctrPorts := map[string]string{}
	for _, p := range ctr.Ports {
		ctrPorts[p.Name] = fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
	}
	for name, want := range map[string]string{"client": "8080/TCP", "admin": "8081/TCP", "gossip": "7946/TCP",
		"gossip-udp": "7946/UDP", "transport": "7947/TCP"} {
		if ctrPorts[name] != want {
			t.Fatalf("container port %s = %q, want %q (all: %v)", name, ctrPorts[name], want, ctrPorts)
		}
	}
	if !slices.Contains(ctr.Args, "0.0.0.0:7946") || !slices.Contains(ctr.Args, "0.0.0.0:7947") {
		t.Fatalf("peer and transport listen addresses missing: %v", ctr.Args)
	}
	aff := tmpl.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(aff) != 1 || aff[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Fatalf("default anti-affinity %+v", aff)
	}

	// Finalizer and status.
	c := e.get("chat")
	if len(c.Finalizers) != 1 || c.Finalizers[0] != Finalizer {
		t.Fatalf("finalizers %v", c.Finalizers)
	}
	if c.Status.ObservedGeneration != c.Generation || c.Status.Selector == "" {
		t.Fatalf("status %+v", c.Status)
	}
	for _, typ := range []string{imv1.ConditionAvailable, imv1.ConditionProgressing, imv1.ConditionDegraded,
		imv1.ConditionRebalancing, imv1.ConditionReconciliationPaused} {
		cd := cond(c, typ)
		if cd.Type == "" || cd.ObservedGeneration != c.Generation || cd.Reason == "" {
			t.Fatalf("condition %s: %+v", typ, cd)
		}
	}
	if !condIs(c, imv1.ConditionProgressing, metav1.ConditionTrue) || !condIs(c, imv1.ConditionAvailable, metav1.ConditionFalse) {
		t.Fatalf("fresh cluster conditions %+v", c.Status.Conditions)
	}

	// A config change rolls the template hash; a no-op reconcile does not.
	before := e.sts("chat").Spec.Template.Annotations[AnnotationTemplateHash]
	e.reconcile("chat")
	if got := e.sts("chat").Spec.Template.Annotations[AnnotationTemplateHash]; got != before {
		t.Fatalf("no-op reconcile changed the template hash")
	}
	e.modify("chat", func(c *imv1.IMCluster) { c.Spec.ExtraConfig["logLevel"] = "info" })
	e.reconcile("chat")
	if got := e.sts("chat").Spec.Template.Annotations[AnnotationTemplateHash]; got == before {
		t.Fatalf("config change kept the template hash")
	}

	// Disabling the PDB deletes it.
	e.modify("chat", func(c *imv1.IMCluster) { f := false; c.Spec.PodDisruptionBudget.Enabled = &f })
	e.reconcile("chat")
	if err := e.c.Get(e.ctx, key("chat"), &policyv1.PodDisruptionBudget{}); err == nil {
		t.Fatalf("pdb still exists after disabling it")
	}
}
