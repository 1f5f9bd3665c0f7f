//go:build chart

package chart

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/imcluster/imcluster/test/chart/chartgen"
)

// TestChartSync fails when the chart's generated files (CRD template, ClusterRole, the cluster.spec
// schema) differ from what config/ says: run `make chart-sync`.
func TestChartSync(t *testing.T) {
	root := repoRoot(t)
	files, err := chartgen.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v (run `make chart-sync`)", path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with config/: run `make chart-sync` and commit the result", path)
		}
	}
}

// TestChartLint is `helm lint --strict` with the defaults and every ci/*-values.yaml scenario.
func TestChartLint(t *testing.T) {
	cases := map[string]map[string]any{"defaults": nil}
	for name, path := range scenarios(t) {
		cases[name] = readValues(t, path)
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = testNamespace
			lint.KubeVersion = kubeVersion(t)
			res := lint.Run([]string{chartDir(t)}, vals)
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("lint error: %v", err)
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

// TestChartSchemaRejects: values.schema.json (additionalProperties: false everywhere, the CRD's own
// schema under cluster.spec) stops mistakes before anything reaches the cluster.
func TestChartSchemaRejects(t *testing.T) {
	cases := []struct {
		name, values, want string
	}{
		{"unknown top-level key", "replicaCount: 2", "replicaCount"},
		{"unknown operator key", "operator:\n  replica: 2", "replica"},
		{"wrong type", "operator:\n  replicas: two", "replicas"},
		{"bad pull policy", "image:\n  pullPolicy: Sometimes", "pullPolicy"},
		{"unknown cluster.spec field", "cluster:\n  enabled: true\n  spec:\n    replica: 3", "replica"},
		{"unknown nested cluster.spec field", "cluster:\n  enabled: true\n  spec:\n    storage:\n      sise: 10Gi", "sise"},
		{"cluster.spec type", "cluster:\n  enabled: true\n  spec:\n    replicas: three", "replicas"},
		{"cluster.spec minimum", "cluster:\n  enabled: true\n  spec:\n    shards: 0", "shards"},
		{"cluster.spec enum", "cluster:\n  enabled: true\n  spec:\n    service:\n      type: Ingress", "type"},
	}
	ch := loadChart(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, ch, parseValues(t, tc.values))
			if err == nil {
				t.Fatalf("values %q rendered; want a schema error", tc.values)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name the schema and %q", err, tc.want)
			}
			lint := action.NewLint()
			lint.Strict = true
			lint.KubeVersion = kubeVersion(t)
			if res := lint.Run([]string{chartDir(t)}, parseValues(t, tc.values)); len(res.Errors) == 0 {
				t.Fatalf("helm lint accepted values %q", tc.values)
			}
		})
	}
}

// TestChartTemplateFails covers combinations the templates refuse.
func TestChartTemplateFails(t *testing.T) {
	_, err := render(t, loadChart(t), parseValues(t, "operator:\n  replicas: 2\n  leaderElection:\n    enabled: false"))
	if err == nil || !strings.Contains(err.Error(), "leaderElection") {
		t.Fatalf("two operators without leader election: err = %v, want a leaderElection failure", err)
	}
	_, err = render(t, loadChart(t), parseValues(t, "serviceAccount:\n  create: false"))
	if err == nil || !strings.Contains(err.Error(), "serviceAccount.name") {
		t.Fatalf("no ServiceAccount and no name: err = %v, want serviceAccount.name required", err)
	}
}

// TestChartRender checks what every scenario renders: labels, selectors, the wiring between objects,
// the CRD and RBAC copied from config/, and the optional objects.
func TestChartRender(t *testing.T) {
	root := repoRoot(t)
	crdSrc, err := os.ReadFile(filepath.Join(root, chartgen.CRDSource))
	if err != nil {
		t.Fatal(err)
	}
	roleSrc, err := os.ReadFile(filepath.Join(root, chartgen.RoleSource))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]any{"defaults": nil}
	for name, path := range scenarios(t) {
		cases[name] = readValues(t, path)
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			ch := loadChart(t)
			r := mustRender(t, ch, vals)
			v, err := chartutilValues(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range append(append([]*unstructured.Unstructured{}, r.objects...), r.hooks...) {
				checkLabels(t, o)
			}
			dep := r.find("Deployment", "-operator")
			if dep == nil {
				t.Fatalf("no operator Deployment in %v", r.kinds())
			}
			checkDeployment(t, r, dep, v)

			crd := r.find("CustomResourceDefinition", crdName)
			if install := v.bool("crds", "install"); (crd != nil) != install {
				t.Fatalf("crds.install=%v but CRD rendered=%v", install, crd != nil)
			}
			if crd != nil {
				checkCRD(t, crd, crdSrc, v.bool("crds", "keep"))
			}
			checkRBAC(t, r, v, roleSrc)
			imc := r.find("IMCluster", "")
			if (imc != nil) != v.bool("cluster", "enabled") {
				t.Fatalf("cluster.enabled=%v but IMCluster rendered=%v", v.bool("cluster", "enabled"), imc != nil)
			}
			if imc != nil {
				wantSpec := map[string]any{}
				if given, ok := v.get("cluster", "spec").(map[string]any); ok {
					maps.Copy(wantSpec, given)
				}
				if wantSpec["version"] == nil && wantSpec["image"] == nil {
					wantSpec["version"] = cmp.Or(v.str("image", "tag"), ch.Metadata.AppVersion)
				}
				if got, _, _ := unstructured.NestedMap(imc.Object, "spec"); !reflect.DeepEqual(got, wantSpec) {
					t.Errorf("IMCluster spec = %v, want cluster.spec (with version defaulted) %v", got, wantSpec)
				}
				if keep := imc.GetAnnotations()["helm.sh/resource-policy"] == "keep"; keep != v.bool("cluster", "keep") {
					t.Errorf("IMCluster keep annotation = %v, want cluster.keep = %v", keep, v.bool("cluster", "keep"))
				}
				if !strings.Contains(r.notes, "kubectl -n "+testNamespace+" wait --for=condition=Available") {
					t.Errorf("NOTES do not say how to wait for the cluster:\n%s", r.notes)
				}
			} else if !strings.Contains(r.notes, "cluster.enabled=true") {
				t.Errorf("NOTES do not say how to create a cluster:\n%s", r.notes)
			}
			dash := r.find("ConfigMap", "-dashboard")
			if (dash != nil) != v.bool("dashboards", "enabled") {
				t.Fatalf("dashboards.enabled=%v but dashboard ConfigMap rendered=%v", v.bool("dashboards", "enabled"), dash != nil)
			}
			if dash != nil {
				if dash.GetLabels()["grafana_dashboard"] != "1" {
					t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard: \"1\"", dash.GetLabels())
				}
				data, _, _ := unstructured.NestedString(dash.Object, "data", "imcluster.json")
				want, err := os.ReadFile(filepath.Join(root, "charts", "imcluster", "dashboards", "imcluster.json"))
				if err != nil {
					t.Fatal(err)
				}
				var got, wantJSON any
				if err := json.Unmarshal([]byte(data), &got); err != nil {
					t.Fatalf("dashboard ConfigMap holds no JSON: %v", err)
				}
				if err := json.Unmarshal(want, &wantJSON); err != nil || !reflect.DeepEqual(got, wantJSON) {
					t.Errorf("dashboard ConfigMap differs from dashboards/imcluster.json (%v)", err)
				}
			}
			sm := r.find("ServiceMonitor", "")
			wantSM := v.bool("metrics", "enabled") && v.bool("metrics", "serviceMonitor", "enabled")
			if (sm != nil) != wantSM {
				t.Fatalf("ServiceMonitor rendered=%v, want %v", sm != nil, wantSM)
			}
			if sm != nil {
				checkServiceMonitor(t, r, sm)
			}
			if pdb := r.find("PodDisruptionBudget", ""); (pdb != nil) != v.bool("podDisruptionBudget", "enabled") {
				t.Fatalf("podDisruptionBudget.enabled=%v but PDB rendered=%v", v.bool("podDisruptionBudget", "enabled"), pdb != nil)
			} else if pdb != nil {
				sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
				checkSelects(t, "PodDisruptionBudget", sel, dep)
			}
			if wantHook := v.bool("metrics", "enabled") || v.bool("cluster", "enabled"); (len(r.hooks) > 0) != wantHook {
				t.Errorf("helm test hook rendered=%v, want %v", len(r.hooks) > 0, wantHook)
			}
			for _, h := range r.hooks {
				if h.GetAnnotations()["helm.sh/hook"] != "test" {
					t.Errorf("hook %s is not a helm test hook", h.GetName())
				}
				script := fmt.Sprint(h.Object["spec"])
				if imc != nil {
					port := 8080
					if p, ok := v.get("cluster", "spec", "service", "clientPort").(float64); ok {
						port = int(p)
					}
					if want := fmt.Sprintf("nc -w 10 %s.%s.svc %d", imc.GetName(), testNamespace, port); !strings.Contains(script, want) {
						t.Errorf("helm test does not check the cluster's client Service (%q):\n%s", want, script)
					}
				}
			}
		})
	}
}

func checkLabels(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	l := o.GetLabels()
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
		"app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"} {
		if l[k] == "" {
			t.Errorf("%s/%s: label %s missing", o.GetKind(), o.GetName(), k)
		}
	}
	if l["app.kubernetes.io/instance"] != testRelease || l["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("%s/%s: instance/managed-by labels = %q/%q", o.GetKind(), o.GetName(), l["app.kubernetes.io/instance"], l["app.kubernetes.io/managed-by"])
	}
}

func checkDeployment(t *testing.T, r rendered, dep *unstructured.Unstructured, v values) {
	t.Helper()
	sel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels")
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	for k, want := range sel {
		if podLabels[k] != want {
			t.Errorf("Deployment selector %s=%s does not match the pod template labels %v", k, want, podLabels)
		}
	}
	sa, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	if v.bool("serviceAccount", "create") {
		if o := r.find("ServiceAccount", ""); o == nil || o.GetName() != sa {
			t.Errorf("Deployment uses ServiceAccount %q, rendered %v", sa, o)
		}
	} else if sa != v.str("serviceAccount", "name") {
		t.Errorf("Deployment uses ServiceAccount %q, want serviceAccount.name %q", sa, v.str("serviceAccount", "name"))
	}
	for _, b := range r.objects {
		if b.GetKind() != "ClusterRoleBinding" && b.GetKind() != "RoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != sa || subjects[0].(map[string]any)["namespace"] != testNamespace {
			t.Errorf("%s %s binds %v, want ServiceAccount %s/%s", b.GetKind(), b.GetName(), subjects, testNamespace, sa)
		}
		ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "name")
		refKind, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind")
		if r.find(refKind, ref) == nil {
			t.Errorf("%s %s refers to %s %s, which the chart does not render", b.GetKind(), b.GetName(), refKind, ref)
		}
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment has %d containers", len(containers))
	}
	c := containers[0].(map[string]any)
	if cmd, _ := c["command"].([]any); len(cmd) != 1 || cmd[0] != "/imcluster-operator" {
		t.Errorf("operator command = %v, want [/imcluster-operator]", c["command"])
	}
	args := strings.Join(toStrings(c["args"]), " ")
	if want := "--leader-elect=" + boolString(v.bool("operator", "leaderElection", "enabled")); !strings.Contains(args, want) {
		t.Errorf("args %q lack %q", args, want)
	}
	if want := "--metrics-secure=" + boolString(v.bool("metrics", "secure")); !strings.Contains(args, want) {
		t.Errorf("args %q lack %q", args, want)
	}
	if ns, _ := v.get("operator", "watchNamespaces").([]any); len(ns) > 0 {
		if want := "--watch-namespace=" + strings.Join(toStrings(ns), ","); !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	} else if strings.Contains(args, "--watch-namespace") {
		t.Errorf("args %q: --watch-namespace without operator.watchNamespaces", args)
	}
	// The NetworkPolicy of the nodes admits the pods --operator-pod-labels names: they must be these.
	if !strings.Contains(args, "--operator-pod-labels=") {
		t.Errorf("args %q lack --operator-pod-labels", args)
	}
	for _, a := range toStrings(c["args"]) {
		if sel, ok := strings.CutPrefix(a, "--operator-pod-labels="); ok {
			depSel, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "selector", "matchLabels")
			got := map[string]string{}
			for kv := range strings.SplitSeq(sel, ",") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = v
			}
			if !reflect.DeepEqual(got, depSel) {
				t.Errorf("--operator-pod-labels %v, want the Deployment's selector %v", got, depSel)
			}
		}
	}
	if img := c["image"].(string); v.str("image", "digest") != "" && !strings.HasSuffix(img, "@"+v.str("image", "digest")) {
		t.Errorf("image %q does not use the digest", img)
	}
	if sc, _ := c["securityContext"].(map[string]any); sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
		t.Errorf("container securityContext = %v", sc)
	}
	svc := r.find("Service", "-metrics")
	if (svc != nil) != v.bool("metrics", "enabled") {
		t.Fatalf("metrics.enabled=%v but metrics Service rendered=%v", v.bool("metrics", "enabled"), svc != nil)
	}
	if svc != nil {
		sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
		checkSelects(t, "metrics Service", sel, dep)
		if !containerHasPort(c, "metrics") {
			t.Errorf("operator container has no port named metrics for the Service's targetPort")
		}
	}
	if (r.find("Role", "-leader-election") != nil) != (v.bool("rbac", "create") && v.bool("operator", "leaderElection", "enabled")) {
		t.Errorf("leader-election Role rendered=%v", r.find("Role", "-leader-election") != nil)
	}
}

func checkSelects(t *testing.T, what string, sel map[string]string, dep *unstructured.Unstructured) {
	t.Helper()
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	if len(sel) == 0 {
		t.Errorf("%s has an empty selector", what)
	}
	for k, want := range sel {
		if podLabels[k] != want {
			t.Errorf("%s selector %s=%s does not select the operator pods %v", what, k, want, podLabels)
		}
	}
}

func containerHasPort(c map[string]any, name string) bool {
	ports, _ := c["ports"].([]any)
	for _, p := range ports {
		if p.(map[string]any)["name"] == name {
			return true
		}
	}
	return false
}

func checkCRD(t *testing.T, crd *unstructured.Unstructured, src []byte, keep bool) {
	t.Helper()
	var want map[string]any
	if err := yaml.Unmarshal(src, &want); err != nil {
		t.Fatal(err)
	}
	if got := crd.Object["spec"]; !reflect.DeepEqual(got, want["spec"]) {
		t.Errorf("rendered CRD spec differs from %s", chartgen.CRDSource)
	}
	if got := crd.GetAnnotations()["helm.sh/resource-policy"] == "keep"; got != keep {
		t.Errorf("CRD keep annotation = %v, want crds.keep = %v", got, keep)
	}
}

// checkRBAC: with rbac.create, the operator gets every rule of config/rbac: through one ClusterRole, or
// with operator.watchNamespaces through a Role in each watched namespace plus a ClusterRole for the
// cluster-scoped review APIs, and no ClusterRole over namespaced objects.
func checkRBAC(t *testing.T, r rendered, v values, src []byte) {
	t.Helper()
	var want rbacv1.ClusterRole
	if err := yaml.Unmarshal(src, &want); err != nil {
		t.Fatal(err)
	}
	namespaces, _ := v.get("operator", "watchNamespaces").([]any)
	manager := r.find("ClusterRole", "-manager")
	if !v.bool("rbac", "create") {
		if manager != nil || r.find("Role", "-manager") != nil {
			t.Fatalf("rbac.create=false but manager RBAC rendered")
		}
		return
	}
	if len(namespaces) == 0 {
		if manager == nil {
			t.Fatalf("rbac.create=true and no watchNamespaces, but no manager ClusterRole")
		}
		if got := rulesOf(t, manager); !reflect.DeepEqual(got, want.Rules) {
			t.Errorf("ClusterRole rules differ from %s:\n got %v\nwant %v", chartgen.RoleSource, got, want.Rules)
		}
		return
	}
	if manager != nil {
		t.Fatalf("watchNamespaces %v but a manager ClusterRole is rendered", namespaces)
	}
	auth := r.find("ClusterRole", "-auth")
	if auth == nil {
		t.Fatalf("watchNamespaces set but no -auth ClusterRole")
	}
	authRules := rulesOf(t, auth)
	for _, rule := range authRules {
		if !slices.Contains(rule.APIGroups, "authentication.k8s.io") && !slices.Contains(rule.APIGroups, "authorization.k8s.io") {
			t.Errorf("the -auth ClusterRole grants %v beyond token and access reviews", rule)
		}
	}
	for _, ns := range namespaces {
		var role *unstructured.Unstructured
		for _, o := range r.objects {
			if o.GetKind() == "Role" && strings.HasSuffix(o.GetName(), "-manager") && o.GetNamespace() == ns {
				role = o
			}
		}
		if role == nil {
			t.Fatalf("no manager Role in watched namespace %s", ns)
		}
		got := append(rulesOf(t, role), authRules...)
		if !sameRules(got, want.Rules) {
			t.Errorf("Role in %s plus the -auth ClusterRole differ from %s:\n got %v\nwant %v", ns, chartgen.RoleSource, got, want.Rules)
		}
		if !slices.ContainsFunc(r.objects, func(o *unstructured.Unstructured) bool {
			return o.GetKind() == "RoleBinding" && o.GetNamespace() == ns
		}) {
			t.Errorf("no RoleBinding in watched namespace %s", ns)
		}
	}
}

func rulesOf(t *testing.T, role *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var got rbacv1.ClusterRole
	b, _ := yaml.Marshal(role.Object)
	if err := yaml.UnmarshalStrict(b, &got); err != nil {
		t.Fatal(err)
	}
	return got.Rules
}

func sameRules(a, b []rbacv1.PolicyRule) bool {
	key := func(r rbacv1.PolicyRule) string { return fmt.Sprint(r) }
	ka, kb := make([]string, 0, len(a)), make([]string, 0, len(b))
	for _, r := range a {
		ka = append(ka, key(r))
	}
	for _, r := range b {
		kb = append(kb, key(r))
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// checkServiceMonitor decodes the ServiceMonitor strictly into prometheus-operator's own Go types (the
// envtest API server has no monitoring.coreos.com CRDs) and checks it scrapes the metrics Service.
func checkServiceMonitor(t *testing.T, r rendered, sm *unstructured.Unstructured) {
	t.Helper()
	b, err := yaml.Marshal(sm.Object)
	if err != nil {
		t.Fatal(err)
	}
	var typed monitoringv1.ServiceMonitor
	if err := yaml.UnmarshalStrict(b, &typed); err != nil {
		t.Fatalf("ServiceMonitor does not match prometheus-operator's API: %v", err)
	}
	if typed.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %q", typed.APIVersion)
	}
	svc := r.find("Service", "-metrics")
	if svc == nil {
		t.Fatal("ServiceMonitor without metrics Service")
	}
	for k, want := range typed.Spec.Selector.MatchLabels {
		if svc.GetLabels()[k] != want {
			t.Errorf("ServiceMonitor selector %s=%s does not select the metrics Service %v", k, want, svc.GetLabels())
		}
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, ep := range typed.Spec.Endpoints {
		found := false
		for _, p := range ports {
			if ep.Port != "" && p.(map[string]any)["name"] == ep.Port {
				found = true
			}
		}
		if !found {
			t.Errorf("ServiceMonitor endpoint port %q is not a port of the metrics Service", ep.Port)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		out = append(out, s.(string))
	}
	return out
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
