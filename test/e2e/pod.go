//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/node/transport"
)

// imageEntrypoint is where the image's binary is in the pod's root (the
// Dockerfile's ENTRYPOINT).
const imageEntrypoint = "/imnode"

// podRunner runs one pod's container and reports its status. Its run
// goroutine owns the process; the fields under mu are what status reports.
type podRunner struct {
	k    *Kubelet
	ip   string
	uid  string
	dir  string // per-pod state: root and volumes
	root string // the container's root directory

	wake chan struct{} // a newer pod object arrived (buffered 1)

	mu        sync.Mutex
	pod       *corev1.Pod
	ipOK      bool
	proc      *exec.Cmd
	waiting   *corev1.ContainerStateWaiting
	running   *corev1.ContainerStateRunning
	lastTerm  *corev1.ContainerStateTerminated
	restarts  int32
	started   bool
	ready     bool
	startTime metav1.Time
	// spec is the container's resolved start spec (for exec hooks and probes).
	spec *shimSpec
}

func newPodRunner(k *Kubelet, p *corev1.Pod, ip string) *podRunner {
	dir := filepath.Join(k.cfg.Dir, "pods", string(p.UID))
	return &podRunner{k: k, ip: ip, uid: string(p.UID), dir: dir, root: filepath.Join(dir, "root"),
		pod: p.DeepCopy(), wake: make(chan struct{}, 1), startTime: metav1.Now()}
}

func (r *podRunner) key() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pod.Namespace + "/" + r.pod.Name
}

func (r *podRunner) hasIP() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ipOK
}

func (r *podRunner) update(p *corev1.Pod) {
	r.mu.Lock()
	r.pod = p.DeepCopy()
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *podRunner) current() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pod.DeepCopy()
}

func (r *podRunner) logf(format string, args ...any) {
	r.k.cfg.Logf("kubelet: pod "+r.key()+": "+format, args...)
}

// run is the pod's lifecycle: set up, start, watch, restart, and on
// deletion stop gracefully and remove the pod from the API.
func (r *podRunner) run(ctx context.Context) {
	p := r.current()
	if len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) > 0 {
		r.setWaiting("CreateContainerConfigError", "the e2e kubelet runs pods of exactly one container and no init containers")
		r.report(ctx)
		r.waitDeletion(ctx)
		return
	}
	if err := r.setupRoot(); err != nil {
		r.setWaiting("CreateContainerError", err.Error())
		r.report(ctx)
		r.waitDeletion(ctx)
		return
	}
	r.mu.Lock()
	r.ipOK = true
	r.mu.Unlock()
	backoff := time.Second
	for ctx.Err() == nil {
		if r.current().DeletionTimestamp != nil {
			r.terminate(ctx)
			return
		}
		exited, err := r.start(ctx)
		if err != nil {
			// Waiting (a missing Secret, an unknown image): retry, or stop
			// waiting when the pod is deleted (the loop checks).
			r.report(ctx)
			r.sleep(ctx, time.Second)
			continue
		}
		r.report(ctx)
		deleting := r.watch(ctx, exited)
		if deleting {
			r.terminate(ctx)
			return
		}
		r.report(ctx)
		r.sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

// sleep waits d or until a pod update; false if the pod is being deleted.
func (r *podRunner) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-r.wake:
			if r.current().DeletionTimestamp != nil {
				return false
			}
		}
	}
}

// waitDeletion waits for the pod's deletion, then completes it.
func (r *podRunner) waitDeletion(ctx context.Context) {
	for r.sleep(ctx, time.Hour) {
	}
	if ctx.Err() == nil {
		r.terminate(ctx)
	}
}

func (r *podRunner) setWaiting(reason, msg string) {
	r.mu.Lock()
	r.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
	r.running = nil
	r.started, r.ready = false, false
	r.mu.Unlock()
	if reason != "ContainerCreating" {
		r.logf("waiting: %s: %s", reason, msg)
	}
}

// setupRoot makes the container's root: the image binary's mount point,
// /etc/hosts, an empty /etc/resolv.conf (no name server: names not in the
// hosts file fail on the loopback resolver instead of leaving the machine)
// and /tmp.
func (r *podRunner) setupRoot() error {
	for _, d := range []string{"etc", "tmp", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(r.root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(r.root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.root, "etc", "resolv.conf"), []byte("# no name server: the e2e kubelet resolves through /etc/hosts\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644); err != nil {
		return err
	}
	return writeHostsFile(r.root, r.k.currentHosts())
}

// start resolves the container and starts its process. It returns a
// channel closed when the process exits.
func (r *podRunner) start(ctx context.Context) (<-chan struct{}, error) {
	p := r.current()
	c := &p.Spec.Containers[0]
	bin, ok := r.k.cfg.Images[c.Image]
	if !ok {
		r.setWaiting("ErrImagePull", fmt.Sprintf("image %q is not one the e2e kubelet has", c.Image))
		return nil, errors.New("unknown image")
	}
	mounts, err := r.volumes(ctx, p, c)
	if err != nil {
		r.setWaiting("CreateContainerConfigError", err.Error())
		return nil, err
	}
	env, err := r.env(ctx, p, c)
	if err != nil {
		r.setWaiting("CreateContainerConfigError", err.Error())
		return nil, err
	}
	lookup := func(name string) (string, bool) {
		for _, e := range slices.Backward(env) {
			if k, v, _ := strings.Cut(e, "="); k == name {
				return v, true
			}
		}
		return "", false
	}
	argv := []string{imageEntrypoint}
	if len(c.Command) > 0 {
		argv = nil
		for _, a := range c.Command {
			argv = append(argv, r.podNet(expand(a, lookup)))
		}
	}
	for _, a := range c.Args {
		argv = append(argv, r.podNet(expand(a, lookup)))
	}
	spec := &shimSpec{Root: r.root, Path: argv[0], Args: argv, Env: env, Dir: c.WorkingDir}
	spec.Mounts = append(spec.Mounts, shimMount{Source: r.root, Target: "/",
		ReadOnly: c.SecurityContext != nil && ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false)})
	spec.Mounts = append(spec.Mounts, shimMount{Source: bin, Target: imageEntrypoint, ReadOnly: true})
	spec.Mounts = append(spec.Mounts, mounts...)
	if uid := runAsUser(p, c); uid != nil {
		spec.UID = ptr.To(int(*uid))
		spec.GID = int(*uid)
		if g := p.Spec.SecurityContext; g != nil && g.FSGroup != nil {
			spec.Groups = []int{int(*g.FSGroup)}
		}
	}
	logPath := filepath.Join(r.k.cfg.Dir, "logs", fmt.Sprintf("%s_%s.log", p.Namespace, p.Name))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.setWaiting("CreateContainerError", err.Error())
		return nil, err
	}
	cmd, err := r.shimCommand(spec)
	if err != nil {
		_ = logFile.Close()
		r.setWaiting("CreateContainerError", err.Error())
		return nil, err
	}
	_, _ = fmt.Fprintf(logFile, "==== e2e kubelet: start %s (uid %s, restart %d): %s\n", p.Name, p.UID, r.restarts, strings.Join(argv, " "))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		r.setWaiting("CreateContainerError", err.Error())
		return nil, err
	}
	r.mu.Lock()
	r.proc, r.spec = cmd, spec
	r.waiting = nil
	r.running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
	r.started, r.ready = false, false
	r.mu.Unlock()
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		code := int32(0)
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = int32(ee.ExitCode())
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int32(ws.Signal())
			}
		}
		r.mu.Lock()
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		started := metav1.Now()
		if r.running != nil {
			started = r.running.StartedAt
		}
		r.lastTerm = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: metav1.Now(),
			ContainerID: r.containerIDLocked()}
		r.running, r.proc = nil, nil
		r.started, r.ready = false, false
		r.mu.Unlock()
		close(exited)
	}()
	r.logf("started (restart %d)", r.restarts)
	return exited, nil
}

func runAsUser(p *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if p.Spec.SecurityContext != nil {
		return p.Spec.SecurityContext.RunAsUser
	}
	return nil
}

// podNet gives the pod its own network: inside a pod's network namespace
// 0.0.0.0 (all interfaces) and 127.0.0.1 (itself) both mean the pod's
// address, which here is a loopback address of its own.
func (r *podRunner) podNet(s string) string {
	s = strings.ReplaceAll(s, "0.0.0.0", r.ip)
	return strings.ReplaceAll(s, "127.0.0.1", r.ip)
}

func (r *podRunner) shimCommand(spec *shimSpec) (*exec.Cmd, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), r.k.cfg.Shim) //nolint:gosec // the test binary itself; stopped by the runner
	cmd.Env = []string{envShim + "=" + string(raw)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}

func (r *podRunner) containerIDLocked() string {
	return fmt.Sprintf("e2e://%s-%d", r.uid, r.restarts)
}

// watch runs the probes until the process exits (false) or the pod is being
// deleted (true). A failed startup or liveness probe kills the process.
func (r *podRunner) watch(ctx context.Context, exited <-chan struct{}) bool {
	p := r.current()
	c := &p.Spec.Containers[0]
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan string, 1)
	go r.probes(pctx, c, failed)
	for {
		select {
		case <-ctx.Done():
			return true
		case <-exited:
			r.logf("container exited: %s", r.termString())
			r.mu.Lock()
			r.restarts++
			r.mu.Unlock()
			return false
		case why := <-failed:
			r.logf("%s: killing the container", why)
			r.stopProcess(time.Duration(ptr.Deref(p.Spec.TerminationGracePeriodSeconds, 30)) * time.Second)
			<-exited
			r.mu.Lock()
			r.restarts++
			r.mu.Unlock()
			return false
		case <-r.wake:
			if r.current().DeletionTimestamp != nil {
				return true
			}
			r.refreshVolumes(ctx)
		case <-time.After(2 * time.Second):
			r.refreshVolumes(ctx)
		}
	}
}

func (r *podRunner) termString() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastTerm == nil {
		return "?"
	}
	return fmt.Sprintf("exit code %d (%s)", r.lastTerm.ExitCode, r.lastTerm.Reason)
}

// probes runs the startup probe, then readiness and liveness, until ctx
// ends. A startup or liveness failure is sent on failed.
func (r *podRunner) probes(ctx context.Context, c *corev1.Container, failed chan<- string) {
	if c.StartupProbe != nil {
		startedOK := false
		if !r.probeLoop(ctx, c.StartupProbe, func(ok bool, n int) bool {
			if ok {
				startedOK = true
				return false
			}
			if n >= int(max(c.StartupProbe.FailureThreshold, 1)) {
				failed <- "startup probe failed"
				return false
			}
			return true
		}) || !startedOK {
			return
		}
	}
	r.mu.Lock()
	r.started = true
	r.ready = c.ReadinessProbe == nil
	r.mu.Unlock()
	r.report(ctx)
	if c.ReadinessProbe != nil {
		go r.probeLoop(ctx, c.ReadinessProbe, func(ok bool, n int) bool {
			threshold := int(max(c.ReadinessProbe.FailureThreshold, 1))
			if ok {
				threshold = int(max(c.ReadinessProbe.SuccessThreshold, 1))
			}
			if n >= threshold {
				r.mu.Lock()
				changed := r.ready != ok
				r.ready = ok
				r.mu.Unlock()
				if changed {
					r.logf("ready: %v", ok)
					r.report(ctx)
				}
			}
			return true
		})
	}
	if c.LivenessProbe != nil {
		r.probeLoop(ctx, c.LivenessProbe, func(ok bool, n int) bool {
			if !ok && n >= int(max(c.LivenessProbe.FailureThreshold, 1)) {
				failed <- "liveness probe failed"
				return false
			}
			return true
		})
	}
}

// probeLoop runs probe every period and calls next with the result and how
// many consecutive results were the same; it stops when next returns false
// (returning true) or ctx ends (false).
func (r *podRunner) probeLoop(ctx context.Context, pr *corev1.Probe, next func(ok bool, n int) bool) bool {
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	if !transport.Sleep(ctx, time.Duration(pr.InitialDelaySeconds)*time.Second) {
		return false
	}
	last, n := false, 0
	for {
		ok := r.probe(ctx, pr) == nil
		if ctx.Err() != nil {
			return false
		}
		if ok == last {
			n++
		} else {
			last, n = ok, 1
		}
		if !next(ok, n) {
			return true
		}
		if !transport.Sleep(ctx, period) {
			return false
		}
	}
}

func (r *podRunner) probe(ctx context.Context, pr *corev1.Probe) error {
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &r.current().Spec.Containers[0]
	switch {
	case pr.HTTPGet != nil:
		port, err := containerPort(c, pr.HTTPGet.Port)
		if err != nil {
			return err
		}
		host := pr.HTTPGet.Host
		if host == "" {
			host = r.ip
		}
		scheme := strings.ToLower(string(pr.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+pr.HTTPGet.Path, nil)
		if err != nil {
			return err
		}
		for _, h := range pr.HTTPGet.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	case pr.TCPSocket != nil:
		port, err := containerPort(c, pr.TCPSocket.Port)
		if err != nil {
			return err
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(r.ip, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case pr.Exec != nil:
		return r.exec(ctx, pr.Exec.Command)
	}
	return errors.New("probe has no handler the e2e kubelet runs")
}

// probeClient does not follow redirects (a probe counts 3xx as success) and
// keeps no connections between probes.
var probeClient = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func containerPort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal && p.Protocol != corev1.ProtocolUDP {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", port.StrVal)
}

// exec runs command in the container's root, environment and mounts (a
// second process in the same "container").
func (r *podRunner) exec(ctx context.Context, command []string) error {
	r.mu.Lock()
	base := r.spec
	r.mu.Unlock()
	if base == nil || len(command) == 0 {
		return errors.New("no container to exec in")
	}
	spec := *base
	spec.Args = nil
	for _, a := range command {
		spec.Args = append(spec.Args, r.podNet(a))
	}
	spec.Path = spec.Args[0]
	cmd, err := r.shimCommand(&spec)
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(command, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		waitErr := <-done // the kill's
		return fmt.Errorf("%s: %w (%v)", strings.Join(command, " "), ctx.Err(), waitErr)
	}
}

// terminate stops the pod the way a kubelet does on deletion: the preStop
// hook, then SIGTERM, then SIGKILL when the grace period is over; then it
// removes the pod from the API (grace period 0) and its root from disk.
func (r *podRunner) terminate(ctx context.Context) {
	p := r.current()
	grace := time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, ptr.Deref(p.Spec.TerminationGracePeriodSeconds, 30))) * time.Second
	deadline := time.Now().Add(grace)
	r.mu.Lock()
	running := r.proc != nil
	r.mu.Unlock()
	if running {
		c := &p.Spec.Containers[0]
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			start := time.Now()
			hctx, cancel := context.WithDeadline(ctx, deadline)
			err := r.exec(hctx, c.Lifecycle.PreStop.Exec.Command)
			cancel()
			r.logf("preStop hook took %s (err %v)", time.Since(start).Round(time.Millisecond), err)
		}
		r.stopProcess(time.Until(deadline))
	}
	r.mu.Lock()
	r.ready = false
	r.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	r.report(ctx)
	err := r.k.cfg.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		r.logf("final delete: %v", err)
	}
	r.k.forget(p.UID)
	if err := os.RemoveAll(r.dir); err != nil {
		r.logf("remove pod directory: %v", err)
	}
	r.logf("terminated and removed")
}

// stopProcess sends SIGTERM and SIGKILL after grace, and waits for the exit.
func (r *podRunner) stopProcess(grace time.Duration) {
	r.mu.Lock()
	cmd := r.proc
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !r.alive() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.logf("still running after the grace period: SIGKILL")
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for r.alive() {
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *podRunner) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc != nil
}

// kill ends the container at once (test teardown, pod force-deleted).
func (r *podRunner) kill() {
	r.mu.Lock()
	cmd := r.proc
	r.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	for r.alive() {
		time.Sleep(20 * time.Millisecond)
	}
}

// report writes the pod's status: phase, IPs, conditions and the container
// status.
func (r *podRunner) report(ctx context.Context) {
	p := r.current()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := r.k.cfg.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != p.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), p.Name)
		}
		cur.Status = r.status(cur)
		_, err = r.k.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		r.logf("status: %v", err)
	}
}

func (r *podRunner) status(p *corev1.Pod) corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &p.Spec.Containers[0]
	cs := corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, ImageID: "e2e://" + c.Image, RestartCount: r.restarts,
		Ready: r.ready, Started: ptr.To(r.started),
	}
	switch {
	case r.running != nil:
		cs.State.Running = r.running.DeepCopy()
		cs.ContainerID = r.containerIDLocked()
	case r.waiting != nil:
		cs.State.Waiting = r.waiting.DeepCopy()
	case r.lastTerm != nil && p.DeletionTimestamp != nil:
		cs.State.Terminated = r.lastTerm.DeepCopy()
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		if r.lastTerm != nil {
			cs.State.Waiting.Reason = "CrashLoopBackOff"
			cs.State.Waiting.Message = fmt.Sprintf("back-off restarting failed container %s", c.Name)
		}
	}
	if r.lastTerm != nil {
		cs.LastTerminationState.Terminated = r.lastTerm.DeepCopy()
	}
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		st := corev1.ConditionFalse
		if ok {
			st = corev1.ConditionTrue
		}
		for _, old := range p.Status.Conditions {
			if old.Type == t && old.Status == st {
				return old
			}
		}
		return corev1.PodCondition{Type: t, Status: st, LastTransitionTime: now}
	}
	phase := corev1.PodPending
	if r.running != nil || (r.lastTerm != nil && r.waiting == nil) {
		phase = corev1.PodRunning
	}
	st := corev1.PodStatus{
		Phase: phase,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
			cond(corev1.ContainersReady, r.ready), cond(corev1.PodReady, r.ready),
		},
		HostIP: r.k.hostIP(), HostIPs: []corev1.HostIP{{IP: r.k.hostIP()}},
		StartTime:         &r.startTime,
		ContainerStatuses: []corev1.ContainerStatus{cs},
		QOSClass:          p.Status.QOSClass,
	}
	if r.ipOK {
		st.PodIP, st.PodIPs = r.ip, []corev1.PodIP{{IP: r.ip}}
	}
	return st
}
