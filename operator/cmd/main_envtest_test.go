//go:build envtest

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	imv1 "github.com/imcluster/imcluster/api/v1"
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

	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kcPath, "--leader-elect", "--leader-election-namespace", "default",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--poll-interval", "200ms")
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
		if got.Status.ObservedGeneration != got.Generation || len(got.Status.Conditions) != 5 {
			return fmt.Errorf("status not reported: %+v", got.Status)
		}
		return nil
	})
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
