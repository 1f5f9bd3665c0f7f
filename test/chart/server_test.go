//go:build chart

package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/imcluster/imcluster/test/chart/chartgen"
)

// TestChartServerValidation renders every scenario and has the real API server validate each object
// with a server-side dry-run apply: OpenAPI schemas of the built-in kinds, the IMCluster CRD schema
// and CEL rules, strict field validation (unknown fields fail) and admission. Nothing is persisted.
// ServiceMonitors are checked against prometheus-operator's Go types in TestChartRender instead:
// envtest has no monitoring.coreos.com CRDs.
func TestChartServerValidation(t *testing.T) {
	_, cfg := apiServer(t)
	ctx := context.Background()
	k := newKube(t, cfg)
	k.ensureNamespace(ctx, t, testNamespace)

	// The IMCluster objects need the CRD in the server: create the chart's CRD for real.
	crd := mustRender(t, loadChart(t), nil).find("CustomResourceDefinition", crdName)
	if crd == nil {
		t.Fatal("the default render has no CRD")
	}
	if err := k.apply(ctx, crd, false); err != nil {
		t.Fatalf("creating the CRD: %v", err)
	}
	t.Cleanup(func() { k.deleteCRD(t) })
	k.waitCRDEstablished(ctx, t)

	for _, name := range sortedNames(scenarios(t)) {
		path := scenarios(t)[name]
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, loadChart(t), readValues(t, path))
			n := 0
			for _, o := range append(append([]*unstructured.Unstructured{}, r.objects...), r.hooks...) {
				if o.GetKind() == "ServiceMonitor" {
					continue
				}
				if ns := o.GetNamespace(); ns != "" {
					k.ensureNamespace(ctx, t, ns) // operator.watchNamespaces puts Roles elsewhere
				}
				if err := k.apply(ctx, o, true); err != nil {
					t.Errorf("%s %s rejected by the API server: %v", o.GetKind(), o.GetName(), err)
				}
				n++
			}
			t.Logf("%d objects validated by the API server", n)
		})
	}

	// The dry-run is strict: a field the API does not know fails, so the checks above are not vacuous.
	t.Run("unknown field rejected", func(t *testing.T) {
		dep := mustRender(t, loadChart(t), nil).find("Deployment", "-operator")
		if err := unstructured.SetNestedField(dep.Object, "x", "spec", "template", "spec", "restartPolicyy"); err != nil {
			t.Fatal(err)
		}
		err := k.apply(ctx, dep, true)
		if err == nil || !strings.Contains(err.Error(), "restartPolicyy") {
			t.Fatalf("a Deployment with an unknown field: err = %v, want an unknown-field error", err)
		}
	})
	// What the values schema cannot express (CEL rules across fields) the API server rejects.
	t.Run("CEL rule enforced", func(t *testing.T) {
		r := mustRender(t, loadChart(t), parseValues(t, "cluster:\n  enabled: true\n  spec:\n    replicas: 3\n    replicationFactor: 3\n    writeQuorum: 4"))
		err := k.apply(ctx, r.find("IMCluster", ""), true)
		if err == nil || !strings.Contains(err.Error(), "writeQuorum must be <= replicationFactor") {
			t.Fatalf("writeQuorum > replicationFactor: err = %v, want the CRD's CEL message", err)
		}
	})
}

// TestChartInstallUpgrade installs the chart with Helm into the envtest API server, upgrades it to a
// chart whose CRD gained a field, and uninstalls it, checking the objects at every step.
func TestChartInstallUpgrade(t *testing.T) {
	env, cfg := apiServer(t)
	ctx := context.Background()
	k := newKube(t, cfg)
	const ns = "imcluster-install"
	k.ensureNamespace(ctx, t, ns)
	waitFor(t, time.Minute, "no CRD left by other tests", func() error {
		if _, err := k.get(ctx, gvrCRD, "", crdName); !apierrors.IsNotFound(err) {
			return fmt.Errorf("CRD still there: %v", err)
		}
		return nil
	})
	t.Cleanup(func() { k.deleteCRD(t) })
	hc := helmConfig(t, env, ns)
	clusterVals := readValues(t, filepath.Join(chartDir(t), "ci", "cluster-values.yaml"))

	// 1. A first install that also renders an IMCluster cannot work before the CRD exists: Helm
	// maps every object before creating any. docs/install.md says to install in two steps.
	t.Run("first install with cluster needs the CRD", func(t *testing.T) {
		inst := newInstall(hc, ns)
		_, err := inst.Run(loadChart(t), clusterVals)
		if err == nil || !strings.Contains(err.Error(), "ensure CRDs are installed first") {
			t.Fatalf("err = %v, want Helm's \"ensure CRDs are installed first\"", err)
		}
		if _, err := k.get(ctx, gvrCRD, "", crdName); !apierrors.IsNotFound(err) {
			t.Fatalf("the failed install left the CRD behind: %v", err)
		}
	})

	// 2. Install an "older" chart whose CRD lacks spec.paused.
	const dropped = "paused"
	old := oldChart(t, dropped)
	rel, err := newInstall(hc, ns).Run(old, nil)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if rel.Info.Status != release.StatusDeployed {
		t.Fatalf("release status %s", rel.Info.Status)
	}
	op := testRelease + "-imcluster-operator"
	mustGet := func(what string, get func() (*unstructured.Unstructured, error)) *unstructured.Unstructured {
		t.Helper()
		o, err := get()
		if err != nil {
			t.Fatalf("%s after install: %v", what, err)
		}
		return o
	}
	mustGet("Deployment", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrDeployment, ns, op) })
	mustGet("ServiceAccount", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrServiceAccount, ns, op) })
	mustGet("metrics Service", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrService, ns, op+"-metrics") })
	mustGet("ClusterRole", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrClusterRole, "", op+"-manager") })
	mustGet("ClusterRoleBinding", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrCRB, "", op+"-manager") })
	mustGet("leader-election Role", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrRole, ns, op+"-leader-election") })
	crd := mustGet("CRD", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrCRD, "", crdName) })
	if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" || crd.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
		t.Fatalf("CRD annotations %v labels %v: want keep and managed-by Helm", crd.GetAnnotations(), crd.GetLabels())
	}
	if specHasField(t, crd, dropped) {
		t.Fatalf("the old chart's CRD already has spec.%s", dropped)
	}
	k.waitCRDEstablished(ctx, t)
	withField := mustRender(t, loadChart(t), parseValues(t, "cluster:\n  enabled: true\n  spec:\n    "+dropped+": true")).find("IMCluster", "")
	withField.SetNamespace(ns)
	if err := k.apply(ctx, withField, true); err == nil || !strings.Contains(err.Error(), dropped) {
		t.Fatalf("the old CRD accepted spec.%s: err = %v", dropped, err)
	}

	// 3. Upgrade to the current chart, now also rendering an IMCluster that uses the new field.
	vals := readValues(t, filepath.Join(chartDir(t), "ci", "cluster-values.yaml"))
	vals["cluster"].(map[string]any)["spec"].(map[string]any)[dropped] = true
	up := action.NewUpgrade(hc)
	up.Namespace = ns
	up.Timeout = time.Minute
	rel, err = up.Run(testRelease, loadChart(t), vals)
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if rel.Version != 2 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("after upgrade: revision %d status %s", rel.Version, rel.Info.Status)
	}
	crd = mustGet("CRD", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrCRD, "", crdName) })
	if !specHasField(t, crd, dropped) {
		t.Fatalf("helm upgrade did not upgrade the CRD: spec.%s missing", dropped)
	}
	imc := mustGet("IMCluster", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrIMCluster, ns, "chat") })
	if v, _, _ := unstructured.NestedBool(imc.Object, "spec", dropped); !v {
		t.Fatalf("IMCluster spec.%s = false after upgrade: %v", dropped, imc.Object["spec"])
	}
	if n, _, _ := unstructured.NestedInt64(imc.Object, "spec", "shards"); n != 256 {
		t.Fatalf("IMCluster spec.shards = %d, want 256", n)
	}

	// 4. A values-only upgrade: two operator replicas and a PDB.
	vals["operator"] = map[string]any{"replicas": 2}
	vals["podDisruptionBudget"] = map[string]any{"enabled": true}
	if _, err = up.Run(testRelease, loadChart(t), vals); err != nil {
		t.Fatalf("second helm upgrade: %v", err)
	}
	dep := mustGet("Deployment", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrDeployment, ns, op) })
	if n, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); n != 2 {
		t.Fatalf("Deployment replicas = %d after upgrade, want 2", n)
	}
	mustGet("PodDisruptionBudget", func() (*unstructured.Unstructured, error) {
		return k.dyn.Resource(gvrPDB).Namespace(ns).Get(ctx, op, metav1.GetOptions{})
	})

	// 5. Uninstall: the operator goes, the CRD and the IMCluster stay (helm.sh/resource-policy: keep).
	res, err := action.NewUninstall(hc).Run(testRelease)
	if err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	t.Logf("uninstall: %s", res.Info)
	waitFor(t, time.Minute, "operator Deployment deleted", func() error {
		if _, err := k.get(ctx, gvrDeployment, ns, op); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	if _, err := k.get(ctx, gvrClusterRole, "", op+"-manager"); !apierrors.IsNotFound(err) {
		t.Fatalf("ClusterRole after uninstall: %v", err)
	}
	mustGet("CRD after uninstall", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrCRD, "", crdName) })
	mustGet("IMCluster after uninstall", func() (*unstructured.Unstructured, error) { return k.get(ctx, gvrIMCluster, ns, "chat") })
}

func newInstall(cfg *action.Configuration, ns string) *action.Install {
	inst := action.NewInstall(cfg)
	inst.ReleaseName = testRelease
	inst.Namespace = ns
	inst.Timeout = time.Minute
	return inst
}

// oldChart is the current chart with an older version number and a CRD that lacks spec.<field>: the
// release an upgrade starts from.
func oldChart(t *testing.T, field string) *chart.Chart {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), chartgen.CRDSource))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(src, &crd); err != nil {
		t.Fatal(err)
	}
	found := false
	for i := range crd.Spec.Versions {
		spec := crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"]
		if _, ok := spec.Properties[field]; ok {
			delete(spec.Properties, field)
			found = true
		}
		crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	}
	if !found {
		t.Fatalf("the CRD has no spec.%s: pick another field for the upgrade test", field)
	}
	oldYAML, err := yaml.Marshal(&crd)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := chartgen.CRDTemplateFrom(oldYAML)
	if err != nil {
		t.Fatal(err)
	}
	ch := loadChart(t)
	ch.Metadata.Version = "0.0.1"
	replaced := false
	for _, f := range ch.Templates {
		if strings.HasSuffix(chartgen.CRDTemplate, f.Name) {
			f.Data, replaced = tpl, true
		}
	}
	if !replaced {
		t.Fatalf("chart template %s not found", chartgen.CRDTemplate)
	}
	return ch
}

func specHasField(t *testing.T, crd *unstructured.Unstructured, field string) bool {
	t.Helper()
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		if _, ok, _ := unstructured.NestedMap(v.(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "properties", field); ok {
			return true
		}
	}
	return false
}

// deleteCRD deletes the IMCluster CRD (and so every IMCluster) and waits until it is gone.
func (k *kube) deleteCRD(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	err := k.dyn.Resource(gvrCRD).Delete(ctx, crdName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting the CRD: %v", err)
		return
	}
	waitFor(t, 2*time.Minute, "CRD deleted", func() error {
		if _, err := k.get(ctx, gvrCRD, "", crdName); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	k.mapper.Reset()
}
