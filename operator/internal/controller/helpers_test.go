package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

func fixture() *imv1.IMCluster {
	return &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "ns"},
		Spec:       imv1.IMClusterSpec{Replicas: 3, Version: "1.0.0", Shards: 16, ReplicationFactor: 3, WriteQuorum: 2},
	}
}

func TestOperatorOrdinalOf(t *testing.T) {
	c := fixture()
	tests := []struct {
		pod  string
		want int32
	}{
		{"chat-0", 0}, {"chat-12", 12}, {"chat-x", -1}, {"chatty-1", -1}, {"other-1", -1}, {"chat--1", -1}, {"chat-", -1},
	}
	for _, tt := range tests {
		if got := ordinalOf(c, tt.pod); got != tt.want {
			t.Errorf("ordinalOf(%q) = %d, want %d", tt.pod, got, tt.want)
		}
	}
}

func TestOperatorTemplateHash(t *testing.T) {
	c := fixture()
	base := desiredPodTemplate(c, "cfg1", c.EffectiveVersion("0.9.0"), DefaultClusterDomain).Annotations[AnnotationTemplateHash]
	if again := desiredPodTemplate(c, "cfg1", c.EffectiveVersion("0.9.0"), DefaultClusterDomain).Annotations[AnnotationTemplateHash]; again != base {
		t.Fatalf("hash not deterministic: %s vs %s", base, again)
	}
	if other := desiredPodTemplate(c, "cfg2", c.EffectiveVersion("0.9.0"), DefaultClusterDomain).Annotations[AnnotationTemplateHash]; other == base {
		t.Fatalf("config change kept the hash")
	}
	c.Spec.Version = "1.1.0"
	if other := desiredPodTemplate(c, "cfg1", c.EffectiveVersion("0.9.0"), DefaultClusterDomain).Annotations[AnnotationTemplateHash]; other == base {
		t.Fatalf("version change kept the hash")
	}
	c = fixture()
	c.Spec.Replicas = 7 // not part of the pod template
	if got := desiredPodTemplate(c, "cfg1", c.EffectiveVersion("0.9.0"), DefaultClusterDomain).Annotations[AnnotationTemplateHash]; got != base {
		t.Fatalf("replica change rolled the pods")
	}
}

func TestOperatorClusterNotHealthy(t *testing.T) {
	tests := []struct {
		name string
		view *adminapi.ClusterStatus
		ok   bool
	}{
		{"no view", nil, false},
		{"healthy", &adminapi.ClusterStatus{Members: []adminapi.Member{{ID: "a", State: adminapi.StateActive, Alive: true}}}, true},
		{"under-replicated", &adminapi.ClusterStatus{UnderReplicated: []int{1}}, false},
		{"member down", &adminapi.ClusterStatus{Members: []adminapi.Member{{ID: "a", State: adminapi.StateActive}}}, false},
		{"left member down is fine", &adminapi.ClusterStatus{Members: []adminapi.Member{{ID: "a", State: adminapi.StateLeft}}}, true},
	}
	for _, tt := range tests {
		if got := clusterNotHealthy(&scope{view: tt.view}); (got == "") != tt.ok {
			t.Errorf("%s: clusterNotHealthy = %q", tt.name, got)
		}
	}
}

func TestOperatorStuckReason(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}},
	}}}}
	if got := stuckReason(p); got != "ImagePullBackOff: no such image" {
		t.Fatalf("stuckReason = %q", got)
	}
	p.Status.ContainerStatuses[0].State.Waiting.Reason = "ContainerCreating"
	if got := stuckReason(p); got != "" {
		t.Fatalf("ContainerCreating reported as stuck: %q", got)
	}
}

func TestOperatorLowestRequeue(t *testing.T) {
	a, b := ctrl.Result{RequeueAfter: time.Second}, ctrl.Result{RequeueAfter: time.Minute}
	if lowestRequeue(a, b) != a || lowestRequeue(b, a) != a || lowestRequeue(ctrl.Result{}, b) != b || lowestRequeue(b, ctrl.Result{}) != b {
		t.Fatal("lowestRequeue does not pick the soonest requeue")
	}
}

// The CRD rejects replicas below replicationFactor; an object that got past
// an older CRD must still not be drained.
func TestOperatorScaleDownRefusedBelowReplicationFactor(t *testing.T) {
	c := fixture()
	c.Spec.Replicas, c.Spec.ReplicationFactor = 2, 3
	s := &scope{cluster: c, before: c.DeepCopy(), nodes: map[int32]*adminapi.NodeStatus{
		2: {ID: "chat-2", State: adminapi.StateActive},
	}}
	r := &IMClusterReconciler{} // no client: a refusal must not touch anything
	if _, err := r.scaleDown(t.Context(), s, 3); err != nil {
		t.Fatalf("scaleDown: %v", err)
	}
	if len(s.degraded) != 1 || s.degraded[0].reason != "ScaleDownRefused" {
		t.Fatalf("degraded %+v", s.degraded)
	}
	if s.operation == nil || s.operation.Pod != "chat-2" {
		t.Fatalf("operation %+v", s.operation)
	}
}
