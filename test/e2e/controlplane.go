//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// EnvAssets is the directory of kube-apiserver, kube-controller-manager and
// etcd (hack/envtest-assets.sh prints it; `make test-e2e` sets it).
const EnvAssets = "KUBEBUILDER_ASSETS"

// startControlPlane starts etcd and kube-apiserver (envtest, with the
// IMCluster CRD installed) and returns the environment. The caller stops it.
func startControlPlane(repo, assets string) (*envtest.Environment, error) {
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(repo, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 3 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	return env, nil
}

// kubeconfigFor adds an API server user and writes its kubeconfig into dir.
func kubeconfigFor(env *envtest.Environment, dir, name string, groups ...string) (string, error) {
	u, err := env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("user %s: %w", name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, strings.ReplaceAll(name, ":", "-")+".kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// operatorRBAC reads the ClusterRole the operator ships (config/rbac) and
// binds it to user.
func operatorRBAC(repo, user string) (*rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, error) {
	data, err := os.ReadFile(filepath.Join(repo, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, nil, err
	}
	var role *rbacv1.ClusterRole
	for doc := range strings.SplitSeq(string(data), "\n---") {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
			return nil, nil, fmt.Errorf("config/rbac/role.yaml: %w", err)
		}
		if r.Kind == "ClusterRole" {
			role = &r
		}
	}
	if role == nil {
		return nil, nil, errors.New("config/rbac/role.yaml has no ClusterRole")
	}
	binding := &rbacv1.ClusterRoleBinding{}
	binding.Name = role.Name
	binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}
	binding.Subjects = []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}
	return role, binding, nil
}

// process is a long-running child (kube-controller-manager, the operator)
// in its own process group, its output in a log file.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	err error
}

func startProcess(name, logPath string, cmd *exec.Cmd) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Die with the test process, even when it cannot clean up.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends sig to the process group and waits up to grace before SIGKILL.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// startKCM runs kube-controller-manager with the controllers the operator's
// objects need: StatefulSets, garbage collection of owned objects, and the
// volume binder and protections for claims.
func startKCM(assets, kubeconfig, logPath string) (*process, error) {
	cmd := exec.CommandContext(context.Background(), filepath.Join(assets, "kube-controller-manager"), //nolint:gosec // built by hack/envtest-assets.sh
		"--kubeconfig="+kubeconfig,
		"--leader-elect=false",
		"--controllers=statefulset-controller,garbage-collector-controller,persistentvolume-binder-controller,"+
			"persistentvolumeclaim-protection-controller,persistentvolume-protection-controller",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--concurrent-statefulset-syncs=2",
		// The binder also reacts to events; its periodic pass is the safety net.
		"--pvclaimbinder-sync-period=2s",
		"--v=1",
	)
	return startProcess("kube-controller-manager", logPath, cmd)
}

// operatorProcess runs the operator binary in a mount namespace where
// /etc/hosts is the kubelet's hosts file and /etc/resolv.conf names no
// server, so it reaches node admin APIs by their pod DNS names.
func operatorProcess(shim, bin, kubeconfig, hosts, resolv, logPath string) (*process, error) {
	spec := shimSpec{
		Mounts: []shimMount{{Source: hosts, Target: "/etc/hosts", ReadOnly: true},
			{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true}},
		Path: bin,
		Args: []string{bin,
			"--kubeconfig=" + kubeconfig,
			"--leader-elect=true", "--leader-election-namespace=" + operatorNamespace,
			"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0",
			"--poll-interval=1s", "--resync-interval=10s",
		},
		Env: []string{"PATH=/usr/bin:/bin"},
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), shim) //nolint:gosec // the test binary itself
	cmd.Env = []string{envShim + "=" + string(raw)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return startProcess("imcluster-operator", logPath, cmd)
}

// operatorNamespace holds the operator's leader election Lease.
const operatorNamespace = "imcluster-system"
