package controller

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// TestOperatorPodSecurityRestricted runs the node pod template through the
// Pod Security Admission library's own checks at level "restricted" (latest
// version), the ones a namespace labelled
// pod-security.kubernetes.io/enforce=restricted applies.
func TestOperatorPodSecurityRestricted(t *testing.T) {
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := fixture()
	c.Spec.TLSSecretRef = &corev1.LocalObjectReference{Name: "client-tls"}
	c.Spec.AppsSecretRef = &corev1.LocalObjectReference{Name: "apps"}
	tmpl := desiredPodTemplate(c, "cfg", "1.0.0", DefaultClusterDomain)
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, res := range eval.EvaluatePod(lv, &tmpl.ObjectMeta, &tmpl.Spec) {
		if !res.Allowed {
			t.Errorf("restricted: %s: %s", res.ForbiddenReason, res.ForbiddenDetail)
		}
	}
	if sc := tmpl.Spec.SecurityContext; sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	ctr := tmpl.Spec.Containers[0]
	if sc := ctr.SecurityContext; sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext = %+v", sc)
	}
	if tok := tmpl.Spec.AutomountServiceAccountToken; tok == nil || *tok {
		t.Errorf("automountServiceAccountToken = %v, want false", tok)
	}

	// The check is not vacuous: a privileged container fails it.
	bad := tmpl.DeepCopy()
	bad.Spec.Containers[0].SecurityContext.Privileged = new(true)
	bad.Spec.SecurityContext.SeccompProfile = nil
	bad.Spec.Containers[0].SecurityContext.SeccompProfile = nil
	refused := 0
	for _, res := range eval.EvaluatePod(lv, &bad.ObjectMeta, &bad.Spec) {
		if !res.Allowed {
			refused++
		}
	}
	if refused < 2 {
		t.Fatalf("a privileged pod without seccomp passed %d checks it should fail", 2-refused)
	}
}

func TestOperatorPodDefaultsAndCustomisation(t *testing.T) {
	c := fixture()
	c.Spec.Version = ""
	tmpl := desiredPodTemplate(c, "cfg", c.EffectiveVersion("2.3.4"), DefaultClusterDomain)
	ctr := tmpl.Spec.Containers[0]
	if ctr.Image != "imcluster/imnode:2.3.4" || tmpl.Annotations[AnnotationVersion] != "2.3.4" {
		t.Errorf("empty spec.version: image %q, version annotation %q; want the operator's version 2.3.4",
			ctr.Image, tmpl.Annotations[AnnotationVersion])
	}
	if got := ctr.Resources.Requests[corev1.ResourceCPU]; got.Cmp(defaultCPURequest) != 0 {
		t.Errorf("default CPU request %s", got.String())
	}
	if got := ctr.Resources.Limits[corev1.ResourceMemory]; got.Cmp(defaultMemoryLimit) != 0 {
		t.Errorf("default memory limit %s", got.String())
	}
	args := strings.Join(ctr.Args, " ")
	if !strings.Contains(args, "--log-format json") || strings.Contains(args, "--public-url") || strings.Contains(args, "--insecure") {
		t.Errorf("args %q: want JSON logs, no --public-url, never --insecure", args)
	}
	// Without spec.publicURL the node serves only the client Service's and
	// its own names (docs/operator.md, "Host names").
	wantHosts := "chat,chat.ns,chat.ns.svc,chat.ns.svc.cluster.local," +
		"$(POD_NAME),$(POD_NAME).chat-peers.ns.svc,$(POD_NAME).chat-peers.ns.svc.cluster.local"
	if i := slices.Index(ctr.Args, "--allowed-hosts"); i < 0 || ctr.Args[i+1] != wantHosts {
		t.Errorf("args %q: want --allowed-hosts %s", ctr.Args, wantHosts)
	}
	if got := desiredPodTemplate(c, "cfg", "2.3.4", "corp.example").Spec.Containers[0].Args; !slices.Contains(got,
		strings.ReplaceAll(wantHosts, "cluster.local", "corp.example")) {
		t.Errorf("cluster domain corp.example: args %q", got)
	}

	c.Spec.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}
	c.Spec.PublicURL = "wss://chat.example.com"
	c.Spec.Pod = imv1.PodSpec{
		Labels:      map[string]string{"team": "chat", labelInstance: "hijack"},
		Annotations: map[string]string{"example.com/scrape": "true", AnnotationVersion: "hijack"},
		Env:         []corev1.EnvVar{{Name: "IMNODE_LOG_LEVEL", Value: "debug"}},
	}
	tmpl = desiredPodTemplate(c, "cfg", "1.0.0", DefaultClusterDomain)
	ctr = tmpl.Spec.Containers[0]
	if len(ctr.Resources.Requests) != 0 || ctr.Resources.Limits.Cpu().String() != "4" {
		t.Errorf("spec.resources not used as given: %+v", ctr.Resources)
	}
	if i := slices.Index(ctr.Args, "--public-url"); i < 0 || ctr.Args[i+1] != "wss://chat.example.com" ||
		slices.Contains(ctr.Args, "--allowed-hosts") {
		t.Errorf("args %q: want --public-url wss://chat.example.com instead of --allowed-hosts", ctr.Args)
	}
	if tmpl.Labels["team"] != "chat" || tmpl.Labels[labelInstance] != c.Name {
		t.Errorf("pod labels %v: want team=chat and the operator's instance label kept", tmpl.Labels)
	}
	if tmpl.Annotations["example.com/scrape"] != "true" || tmpl.Annotations[AnnotationVersion] != "1.0.0" {
		t.Errorf("pod annotations %v", tmpl.Annotations)
	}
	if ctr.Env[len(ctr.Env)-1].Name != "IMNODE_LOG_LEVEL" {
		t.Errorf("extra env not appended: %+v", ctr.Env)
	}
}
