//go:build envtest

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/config/prometheus"
)

// TestOperatorBinary runs the real imcluster-operator binary against a real
// API server: flags, leader election, the pod cache filter and the controller
// wiring in main.
func TestOperatorBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "imcluster-operator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	user, err := te.AddUser(envtest.User{Name: "operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add user: %v", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}

	metricsAddr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kcPath, "--leader-elect", "--leader-election-namespace", "default",
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--poll-interval", "200ms",
		"--watch-namespace", "default")
	logFile, err := os.Create(filepath.Join(t.TempDir(), "operator.log"))
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start operator: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("operator log:\n%s", out)
		}
	})

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	// An IMCluster outside --watch-namespace, created first: it must stay untouched.
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	outside := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Name: "outside", Namespace: "elsewhere"},
		Spec: imv1.IMClusterSpec{Replicas: 3, Version: "1.0.0"}}
	if err := c.Create(t.Context(), outside); err != nil {
		t.Fatalf("create IMCluster: %v", err)
	}
	im := &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: imv1.IMClusterSpec{Replicas: 3, Version: "1.0.0"}}
	if err := c.Create(t.Context(), im); err != nil {
		t.Fatalf("create IMCluster: %v", err)
	}
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		lease := &coordinationv1.Lease{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "imcluster-operator.imcluster.io"}, lease); err != nil {
			return fmt.Errorf("leader lease: %w", err)
		}
		sts := &appsv1.StatefulSet{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "smoke"}, sts); err != nil {
			return fmt.Errorf("statefulset: %w", err)
		}
		secret := &corev1.Secret{}
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "smoke-admin-token"}, secret); err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		got := &imv1.IMCluster{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(im), got); err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation || meta.FindStatusCondition(got.Status.Conditions, imv1.ConditionAvailable) == nil {
			return fmt.Errorf("status not reported: %+v", got.Status)
		}
		return nil
	})
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "elsewhere", Name: "outside"}, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("IMCluster outside --watch-namespace was reconciled: get StatefulSet: %v", err)
	}
	if got := (&imv1.IMCluster{}); c.Get(t.Context(), client.ObjectKeyFromObject(outside), got) == nil && len(got.Finalizers) > 0 {
		t.Errorf("IMCluster outside --watch-namespace got finalizers %v", got.Finalizers)
	}

	checkSecureMetrics(t, cfg, c, "https://"+metricsAddr+"/metrics")
}

// checkSecureMetrics: /metrics is HTTPS and answers only a bearer token that
// may GET it: none is 401, a ServiceAccount without the right 403, with a
// ClusterRole granting nonResourceURLs /metrics 200.
func checkSecureMetrics(t *testing.T, cfg *rest.Config, c client.Client, url string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the operator's certificate is self-signed
	get := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body), nil
	}
	checkFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		code, _, err := get("")
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("no token: HTTP %d, want 401", code)
		}
		return nil
	})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scraper", Namespace: "default"}}
	if err := c.Create(t.Context(), sa); err != nil {
		t.Fatalf("create ServiceAccount: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(t.Context(), "scraper", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	token := tr.Status.Token
	if code, _, err := get(token); err != nil || code != http.StatusForbidden {
		t.Fatalf("token without RBAC: HTTP %d (%v), want 403", code, err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scraper-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: "default"}}}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(t.Context(), o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
	// The smoke cluster's scale-up waits for pods no kubelet runs: its
	// operation is in flight, so every operator metric the alerting rules
	// name must have its series.
	wanted := slices.Compact(slices.Sorted(slices.Values(operatorMetricRef.FindAllString(string(prometheus.Rules), -1))))
	if len(wanted) == 0 {
		t.Fatal("config/prometheus/rules.yaml names no imcluster_operator_* metric")
	}
	checkFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		code, body, err := get(token)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
			return fmt.Errorf("token with RBAC: HTTP %d, want 200 with the reconcile metrics", code)
		}
		for _, m := range wanted {
			if !strings.Contains(body, m+`{name="smoke",namespace="default",type="ScaleUp"}`) {
				return fmt.Errorf("%s (used by config/prometheus/rules.yaml) has no series of the smoke cluster's ScaleUp", m)
			}
		}
		return nil
	})
}

// operatorMetricRef finds the operator's own metrics in rule expressions.
var operatorMetricRef = regexp.MustCompile(`\bimcluster_operator_[a-z0-9_]+\b`)

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func checkFor(t testing.TB, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("timed out after %s: %v", total, err)
}
