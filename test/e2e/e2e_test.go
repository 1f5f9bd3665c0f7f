//go:build e2e

package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

func TestMain(m *testing.M) {
	if raw := os.Getenv(envShim); raw != "" {
		os.Exit(runShim(raw))
	}
	logf.SetLogger(logr.Discard()) // envtest logs through controller-runtime
	os.Exit(m.Run())
}

// Versions of imnode the scenarios run: the cluster starts on the first and
// is upgraded to the second. Both are the binary of this tree, stamped with
// these versions (-ldflags -X node.Version), the image tag the kubelet maps
// to each.
const (
	versionA = "e2e-1.0.0"
	versionB = "e2e-1.1.0"
	appID    = "e2e-app"
	ns       = "chat"
	imcName  = "chat"
)

// world is the running system: control plane, kubelet, operator.
type world struct {
	t       *testing.T
	dir     string
	env     *envtest.Environment
	kube    kubernetes.Interface
	c       client.WithWatch
	kubelet *Kubelet
	kcm     *process

	opMu     sync.Mutex
	operator *process
	opStarts int
	opBin    string
	opKC     string
	shim     string
	hosts    string
	resolv   string

	token string
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// build compiles pkg into out with version stamped in; static (no cgo) for
// a binary that runs in a pod root holding nothing else, as in the image.
func build(t *testing.T, repo, pkg, out, version string, static bool) {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "go", "build",
		"-ldflags", "-X github.com/imcluster/imcluster/node.Version="+version, "-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	t.Logf("built %s (%s) in %s", pkg, version, time.Since(start).Round(time.Second))
}

// loopbackNet picks a random 127.A.B.0/24 for the pods, so two runs on one
// machine do not collide on their fixed ports.
func loopbackNet() net.IP {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return net.IPv4(127, 100+b[0]%100, 1+b[1]%250, 0)
}

func startWorld(t *testing.T) *world {
	assets := os.Getenv(EnvAssets)
	if assets == "" {
		t.Fatalf("%s is not set: run `make test-e2e` (it builds kube-apiserver, kube-controller-manager and etcd with hack/envtest-assets.sh)", EnvAssets)
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Fatalf("%s: %v (rebuild with hack/envtest-assets.sh)", b, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the e2e kubelet runs containers in mount namespaces and chroots: run as root")
	}
	repo := repoRoot(t)
	dir := t.TempDir()
	w := &world{t: t, dir: dir}
	bins := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bins, 0o755); err != nil {
		t.Fatal(err)
	}
	imA, imB := filepath.Join(bins, "imnode-"+versionA), filepath.Join(bins, "imnode-"+versionB)
	w.opBin = filepath.Join(bins, "imcluster-operator")
	build(t, repo, "./node/cmd/imnode", imA, versionA, true)
	build(t, repo, "./node/cmd/imnode", imB, versionB, true)
	// The operator runs on the host (in a mount namespace, not a pod root).
	build(t, repo, "./operator/cmd", w.opBin, versionA, false)
	shim, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w.shim = shim

	start := time.Now()
	env, err := startControlPlane(repo, assets)
	if err != nil {
		t.Fatal(err)
	}
	w.env = env
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stop control plane: %v", err)
		}
	})
	t.Logf("kube-apiserver and etcd up in %s at %s", time.Since(start).Round(time.Millisecond), env.Config.Host)

	scheme := clientgoscheme.Scheme
	if err := imv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	w.c, err = client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	w.kube = kubernetes.NewForConfigOrDie(env.Config)

	kcmKC, err := kubeconfigFor(env, dir, "system:kube-controller-manager", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	w.kcm, err = startKCM(assets, kcmKC, filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.kcm.stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			dumpTail(t, w.kcm.log, 40)
		}
	})

	w.hosts = filepath.Join(dir, "hosts")
	w.resolv = filepath.Join(dir, "resolv.conf")
	for _, f := range []string{w.hosts, w.resolv} {
		if err := os.WriteFile(f, []byte("# written by the e2e test\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kubeletKC, err := kubeconfigFor(env, dir, "system:node:e2e-node", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kcfg, err := clientcmd.BuildConfigFromFlags("", kubeletKC)
	if err != nil {
		t.Fatal(err)
	}
	kcfg.QPS, kcfg.Burst = 200, 400
	w.kubelet = NewKubelet(KubeletConfig{
		Client:   kubernetes.NewForConfigOrDie(kcfg),
		NodeName: "e2e-node",
		Dir:      filepath.Join(dir, "kubelet"),
		Images: map[string]string{
			imv1.DefaultImageRepository + ":" + versionA: imA,
			imv1.DefaultImageRepository + ":" + versionB: imB,
		},
		Net:        loopbackNet(),
		HostsFiles: []string{w.hosts},
		Shim:       shim,
		Logf:       t.Logf,
	})
	if err := w.kubelet.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.kubelet.Stop()
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "kubelet", "logs", "*.log"))
			for _, l := range logs {
				dumpTail(t, l, 30)
			}
		}
	})

	role, binding, err := operatorRBAC(repo, "imcluster-operator")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, o := range []client.Object{role, binding,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}} {
		if err := w.c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	w.opKC, err = kubeconfigFor(env, dir, "imcluster-operator")
	if err != nil {
		t.Fatal(err)
	}
	w.startOperator()
	t.Cleanup(func() {
		w.stopOperator(syscall.SIGTERM)
		if t.Failed() {
			for i := 1; i <= w.opStarts; i++ {
				dumpTail(t, w.operatorLog(i), 40)
			}
		}
	})
	return w
}

func (w *world) operatorLog(n int) string {
	return filepath.Join(w.dir, fmt.Sprintf("operator-%d.log", n))
}

func (w *world) startOperator() { w.startOperatorWith(w.hosts) }

// startOperatorWith starts the operator with hosts as its /etc/hosts.
func (w *world) startOperatorWith(hosts string) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.opStarts++
	p, err := operatorProcess(w.shim, w.opBin, w.opKC, hosts, w.resolv, w.operatorLog(w.opStarts))
	if err != nil {
		w.t.Fatal(err)
	}
	w.operator = p
}

func (w *world) stopOperator(sig syscall.Signal) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	if w.operator != nil {
		w.operator.stop(sig, 15*time.Second)
		w.operator = nil
	}
}

// checkProcesses fails the test when kube-controller-manager or the
// operator died on their own.
func (w *world) checkProcesses() {
	w.t.Helper()
	if done, err := w.kcm.exited(); done {
		w.t.Fatalf("kube-controller-manager exited: %v", err)
	}
	w.opMu.Lock()
	op := w.operator
	w.opMu.Unlock()
	if op != nil {
		if done, err := op.exited(); done {
			w.t.Fatalf("the operator exited: %v", err)
		}
	}
}

func dumpTail(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("---- last %d lines of %s:\n%s", len(lines), filepath.Base(path), strings.Join(lines, "\n"))
}

// bearer adds the admin token to requests that have none: test/chaos's
// Verify reads /admin/v1/debug/messages with http.DefaultClient, and the
// operator's nodes require the token.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" && strings.HasPrefix(r.URL.Path, "/admin/") {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

// TestOperatorOnRealNodes runs the scenarios in order on one cluster: each
// starts from where the previous one left it.
func TestOperatorOnRealNodes(t *testing.T) {
	start := time.Now()
	w := startWorld(t)
	w.createCluster()
	t.Cleanup(func() { writeTranscript(t, w) })
	steps := []struct {
		name string
		run  func(*scenario)
	}{
		{"create-3", (*scenario).create},
		{"scale-up-5", (*scenario).scaleUp},
		{"scale-down-3", (*scenario).scaleDown},
		{"upgrade", (*scenario).upgrade},
		{"delete-pod", (*scenario).deletePod},
		{"pause-resume", (*scenario).pauseResume},
		{"operator-restart-mid-drain", (*scenario).operatorRestartMidDrain},
	}
	var results []result
	for _, st := range steps {
		res := w.run(st.name, st.run)
		results = append(results, res)
		t.Logf("e2e scenario %s", res)
		if t.Failed() {
			break
		}
	}
	t.Logf("e2e summary (%d scenarios, %s in all, %d CPUs):", len(results), time.Since(start).Round(time.Second), runtime.NumCPU())
	for _, r := range results {
		t.Logf("  %s", r)
	}
}

// createCluster creates the apps Secret and starts the transcript watch;
// the create scenario creates the IMCluster.
func (w *world) createCluster() {
	t, ctx := w.t, w.t.Context()
	// The load's senders send faster than a client may by default (60
	// messages a minute).
	apps := fmt.Sprintf(`{"apps":[{"appId":%q,"appKey":"e2e-key","masterKey":"e2e-master","limits":{"sendsPerMinutePerClient":-1}}]}`, appID)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat-apps", Namespace: ns}, StringData: map[string]string{"apps.json": apps}}
	if err := w.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	startTranscript(w)
}

// adminToken waits for the token Secret the operator creates and makes
// http.DefaultClient send it.
func (w *world) adminToken() {
	t, ctx := w.t, w.t.Context()
	sec := &corev1.Secret{}
	poll(t, "the operator's admin token Secret", 2*time.Minute, func() (bool, string) {
		err := w.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: imcName + "-admin-token"}, sec)
		return err == nil && len(sec.Data["token"]) > 0, fmt.Sprint(err)
	})
	w.token = string(sec.Data["token"])
	http.DefaultClient = &http.Client{Transport: bearer{token: w.token, next: http.DefaultTransport}}
}
