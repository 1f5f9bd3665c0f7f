//go:build chart

package chart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root: the test runs in test/chart.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "imcluster") }

// loadChart loads a fresh copy of the chart from disk (callers may modify it).
func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// scenarios returns the ci/*-values.yaml files by name ("cluster" for ci/cluster-values.yaml).
func scenarios(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml scenarios: %v", err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func readValues(t testing.TB, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return v.AsMap()
}

// parseValues parses inline YAML values.
func parseValues(t testing.TB, s string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(s))
	if err != nil {
		t.Fatalf("parsing values: %v", err)
	}
	return v.AsMap()
}

const (
	testRelease   = "imc"
	testNamespace = "imcluster-system"
)

// rendered is the output of `helm template`: the release objects and the hook objects.
type rendered struct {
	objects []*unstructured.Unstructured
	hooks   []*unstructured.Unstructured
	notes   string
}

// find returns the object of the kind whose name has the suffix, or nil.
func (r rendered) find(kind, nameSuffix string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && strings.HasSuffix(o.GetName(), nameSuffix) {
			return o
		}
	}
	return nil
}

func (r rendered) kinds() []string {
	var ks []string
	for _, o := range r.objects {
		ks = append(ks, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(ks)
	return ks
}

// render runs `helm template` (client-only install, the way the helm CLI does it) and parses the result.
func render(t testing.TB, ch *chart.Chart, vals map[string]any) (rendered, error) {
	t.Helper()
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = testRelease
	inst.Namespace = testNamespace
	inst.KubeVersion = kubeVersion(t)
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return rendered{}, err
	}
	out := rendered{notes: rel.Info.Notes}
	out.objects, err = decodeManifests(rel.Manifest)
	if err != nil {
		return rendered{}, err
	}
	for _, h := range rel.Hooks {
		objs, err := decodeManifests(h.Manifest)
		if err != nil {
			return rendered{}, fmt.Errorf("hook %s: %w", h.Path, err)
		}
		out.hooks = append(out.hooks, objs...)
	}
	return out, nil
}

func mustRender(t testing.TB, ch *chart.Chart, vals map[string]any) rendered {
	t.Helper()
	r, err := render(t, ch, vals)
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	return r
}

func decodeManifests(manifest string) ([]*unstructured.Unstructured, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var objs []*unstructured.Unstructured
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("invalid YAML: %w\n%s", err, doc)
		}
		if m == nil {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// kubeVersion is the Kubernetes version Helm assumes offline (helm template, helm lint): the helm CLI
// release is built with the minor version of its client-go (hack/chart-test.sh passes the same
// -ldflags); derive it from the client-go in go.mod so the test does not depend on the flags.
func kubeVersion(t testing.TB) *chartutil.KubeVersion {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(gomod), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "k8s.io/client-go" {
			// client-go v0.M.P goes with Kubernetes v1.M.
			minor, _, _ := strings.Cut(strings.TrimPrefix(f[1], "v0."), ".")
			kv, err := chartutil.ParseKubeVersion("v1." + minor + ".0")
			if err != nil {
				t.Fatal(err)
			}
			return kv
		}
	}
	t.Fatal("k8s.io/client-go is not in go.mod")
	return nil
}

// --- the envtest API server, shared by the tests of this package and stopped in TestMain ---

var apiEnv struct {
	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if apiEnv.env != nil {
		if err := apiEnv.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

// apiServer starts (once) a real kube-apiserver and etcd from KUBEBUILDER_ASSETS.
func apiServer(t testing.TB) (*envtest.Environment, *rest.Config) {
	t.Helper()
	apiEnv.once.Do(func() {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			apiEnv.err = errors.New("KUBEBUILDER_ASSETS is not set: run the chart tests with `make test-helm`, which builds kube-apiserver and etcd through hack/envtest-assets.sh")
			return
		}
		start := time.Now()
		env := &envtest.Environment{
			ControlPlaneStartTimeout: envDuration("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", 3*time.Minute),
			ControlPlaneStopTimeout:  envDuration("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT", time.Minute),
		}
		apiEnv.cfg, apiEnv.err = env.Start()
		if apiEnv.err == nil {
			apiEnv.env = env
			fmt.Fprintf(os.Stderr, "envtest: kube-apiserver and etcd started in %s\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if apiEnv.err != nil {
		t.Fatalf("starting the envtest API server: %v", apiEnv.err)
	}
	return apiEnv.env, apiEnv.cfg
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// kube bundles the clients the tests use against the API server.
type kube struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKube(t testing.TB, cfg *rest.Config) *kube {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kube{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (k *kube) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		k.mapper.Reset()
		if m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, err
		}
	}
	if m.Scope.Name() == "namespace" {
		return k.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return k.dyn.Resource(m.Resource), nil
}

// apply server-side applies obj; with dryRun the API server validates it fully (schema, strict field
// validation, CEL rules, admission) and persists nothing.
func (k *kube) apply(ctx context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	ri, err := k.resource(obj)
	if err != nil {
		return err
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: "imcluster-chart-test", Force: new(true), FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	return err
}

func (k *kube) get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	if ns == "" {
		return k.dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
	}
	return k.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
}

var (
	gvrCRD            = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrDeployment     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrServiceAccount = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	gvrService        = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrClusterRole    = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
	gvrCRB            = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}
	gvrRole           = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	gvrPDB            = schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}
	gvrIMCluster      = schema.GroupVersionResource{Group: "imcluster.io", Version: "v1", Resource: "imclusters"}
)

const crdName = "imclusters.imcluster.io"

// ensureNamespace creates the namespace if it does not exist.
func (k *kube) ensureNamespace(ctx context.Context, t testing.TB, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name},
	}}
	if err := k.apply(ctx, ns, false); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// waitFor polls cond every 100ms until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCRDEstablished waits until the IMCluster CRD is Established and served.
func (k *kube) waitCRDEstablished(ctx context.Context, t testing.TB) {
	t.Helper()
	waitFor(t, time.Minute, "CRD established", func() error {
		crd, err := k.get(ctx, gvrCRD, "", crdName)
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			cm := c.(map[string]any)
			if cm["type"] == "Established" && cm["status"] == "True" {
				k.mapper.Reset()
				return nil
			}
		}
		return fmt.Errorf("conditions %v", conds)
	})
}

// helmConfig returns a Helm action configuration talking to the envtest API server as an admin user,
// storing releases in Secrets like the helm CLI.
func helmConfig(t testing.TB, env *envtest.Environment, namespace string) *action.Configuration {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: "helm-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	cacheDir := filepath.Join(dir, "cache")
	flags.KubeConfig, flags.Namespace, flags.CacheDir = &path, &namespace, &cacheDir
	var getter genericclioptions.RESTClientGetter = flags
	if v := unstampedVersionFix(t, flags); v != nil {
		getter = versionedGetter{ConfigFlags: flags, version: v}
	}
	cfg := new(action.Configuration)
	if err := cfg.Init(getter, namespace, "secret", func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// values are the chart's values coalesced with a scenario's, as the templates see them.
type values map[string]any

func chartutilValues(ch *chart.Chart, vals map[string]any) (values, error) {
	v, err := chartutil.CoalesceValues(ch, vals)
	return values(v), err
}

func (v values) get(path ...string) any {
	var cur any = map[string]any(v)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func (v values) bool(path ...string) bool { b, _ := v.get(path...).(bool); return b }

func (v values) str(path ...string) string { s, _ := v.get(path...).(string); return s }

// unstampedVersionFix returns the Kubernetes version to report instead of the API server's own when
// the server reports none. kube-apiserver built with plain `go build` (hack/envtest-assets.sh builds it
// from the Go module proxy) says "v0.0.0-master+$Format:%H$" unless the build stamps the version
// through -ldflags, and Helm then rejects every chart with a kubeVersion constraint. The binary is
// built from the release in the KUBEBUILDER_ASSETS directory name (v1.37.2-etcd...), so that version
// is reported instead. A stamped server gets nil: nothing is changed.
func unstampedVersionFix(t testing.TB, flags *genericclioptions.ConfigFlags) *version.Info {
	t.Helper()
	dc, err := flags.ToDiscoveryClient()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sv.GitVersion, "v0.0.0") {
		return nil
	}
	m := regexp.MustCompile(`^v1\.(\d+)\.\d+`).FindStringSubmatch(filepath.Base(os.Getenv("KUBEBUILDER_ASSETS")))
	if m == nil {
		t.Fatalf("the API server reports version %q and KUBEBUILDER_ASSETS=%q names none", sv.GitVersion, os.Getenv("KUBEBUILDER_ASSETS"))
	}
	fixed := *sv
	fixed.GitVersion, fixed.Major, fixed.Minor = m[0], "1", m[1]
	t.Logf("the envtest kube-apiserver is not version-stamped (%s): Helm sees %s, the release it was built from", sv.GitVersion, fixed.GitVersion)
	return &fixed
}

// versionedGetter is the kubeconfig getter with a discovery client that reports a fixed server version.
type versionedGetter struct {
	*genericclioptions.ConfigFlags
	version *version.Info
}

func (g versionedGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	dc, err := g.ConfigFlags.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	return versionedDiscovery{CachedDiscoveryInterface: dc, version: g.version}, nil
}

type versionedDiscovery struct {
	discovery.CachedDiscoveryInterface
	version *version.Info
}

func (d versionedDiscovery) ServerVersion() (*version.Info, error) { return d.version, nil }
