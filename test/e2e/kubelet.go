//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// KubeletConfig configures the test kubelet.
type KubeletConfig struct {
	// Client talks to the API server with the kubelet's rights.
	Client kubernetes.Interface
	// NodeName is the Node the kubelet registers and runs the pods of.
	NodeName string
	// Dir holds pod roots, volumes, persistent volumes and container logs.
	Dir string
	// Images maps an image reference to the binary that is its entrypoint
	// (mounted at /imnode in the pod's root). A pod naming another image
	// stays Waiting with ErrImagePull.
	Images map[string]string
	// Net is the /24 pods get their addresses from: 127.A.B.0, A and B > 0.
	// Pods get .10 and up, stable per namespace/name.
	Net net.IP
	// HostsFiles are extra files (outside any pod root) kept equal to the
	// pods' /etc/hosts; they are rewritten in place (they may be bind mounts).
	HostsFiles []string
	// Shim is the executable that runs shimSpecs (the test binary).
	Shim string
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

// Kubelet is the test kubelet. Start it with Start, stop it with Stop, which
// kills every process it started.
type Kubelet struct {
	cfg    KubeletConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	runners map[types.UID]*podRunner
	// finished holds the pods whose runner ended (deleted from the API): a
	// pod object listed before that must not start them again.
	finished map[types.UID]bool
	ips      map[string]string // namespace/name -> pod IP
	hosts    string            // content last written to the hosts files
}

// interval is the kubelet's sync period: every pass lists the pods, claims
// and services again (a test API server answers that in a few ms).
const interval = 300 * time.Millisecond

// NewKubelet returns a kubelet for cfg.
func NewKubelet(cfg KubeletConfig) *Kubelet {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Kubelet{cfg: cfg, runners: map[types.UID]*podRunner{}, finished: map[types.UID]bool{}, ips: map[string]string{}}
}

// Start registers the Node and starts the sync loop.
func (k *Kubelet) Start(ctx context.Context) error {
	for _, d := range []string{"pods", "pv", "logs"} {
		if err := os.MkdirAll(filepath.Join(k.cfg.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := k.registerNode(ctx); err != nil {
		return err
	}
	ctx, k.cancel = context.WithCancel(context.WithoutCancel(ctx))
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := k.sync(ctx); err != nil && ctx.Err() == nil {
				k.cfg.Logf("kubelet: sync: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the sync loop and kills every container (SIGKILL, no grace):
// the test is over.
func (k *Kubelet) Stop() {
	if k.cancel == nil {
		return
	}
	k.cancel()
	<-k.done
	k.mu.Lock()
	runners := slices.Collect(maps.Values(k.runners))
	k.mu.Unlock()
	for _, r := range runners {
		r.kill()
	}
}

// PodIP returns the address the kubelet gives (or gave) the pod.
func (k *Kubelet) PodIP(namespace, name string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ipLocked(namespace, name)
}

func (k *Kubelet) ipLocked(namespace, name string) string {
	key := namespace + "/" + name
	if ip, ok := k.ips[key]; ok {
		return ip
	}
	base := k.cfg.Net.To4()
	ip := net.IPv4(base[0], base[1], base[2], byte(10+len(k.ips))).String()
	k.ips[key] = ip
	return ip
}

func (k *Kubelet) hostIP() string {
	base := k.cfg.Net.To4()
	return net.IPv4(base[0], base[1], base[2], 1).String()
}

func (k *Kubelet) registerNode(ctx context.Context) error {
	now := metav1.Now()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: map[string]string{
			corev1.LabelHostname: k.cfg.NodeName, corev1.LabelOSStable: "linux",
		}},
	}
	created, err := k.cfg.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kubelet: register node: %w", err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("24Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	created.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "e2e test kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.hostIP()},
			{Type: corev1.NodeHostName, Address: k.cfg.NodeName}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "e2e", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "e2e-shim://1"},
	}
	if _, err := k.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubelet: node status: %w", err)
	}
	return nil
}

// sync is one pass: provision claims, bind pending pods, start and stop
// containers, rewrite hosts files and volumes.
func (k *Kubelet) sync(ctx context.Context) error {
	c := k.cfg.Client.CoreV1()
	pvcs, err := c.PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := k.provision(ctx, pvcs.Items); err != nil {
		return err
	}
	pods, err := c.Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	svcs, err := c.Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	for i := range pvcs.Items {
		claims[pvcs.Items[i].Namespace+"/"+pvcs.Items[i].Name] = &pvcs.Items[i]
	}
	seen := map[types.UID]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case p.Spec.NodeName == "" && p.DeletionTimestamp == nil:
			k.schedule(ctx, p, claims)
		case p.Spec.NodeName == k.cfg.NodeName:
			seen[p.UID] = true
			k.runPod(ctx, p)
		}
	}
	k.mu.Lock()
	var gone []*podRunner
	for uid, r := range k.runners {
		if !seen[uid] {
			gone = append(gone, r)
			delete(k.runners, uid)
		}
	}
	k.mu.Unlock()
	for _, r := range gone {
		// Deleted from the API without a grace period (force): stop now.
		k.cfg.Logf("kubelet: pod %s is gone from the API: killing its container", r.key())
		r.kill()
	}
	return k.writeHosts(pods.Items, svcs.Items)
}

// provision creates a PersistentVolume for every unbound claim, pre-bound to
// it (claimRef) like a dynamic provisioner does; kube-controller-manager's
// persistentvolume-binder then binds the claim.
func (k *Kubelet) provision(ctx context.Context, pvcs []corev1.PersistentVolumeClaim) error {
	for i := range pvcs {
		pvc := &pvcs[i]
		if pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil || pvc.Status.Phase != corev1.ClaimPending {
			continue
		}
		name := "pv-" + string(pvc.UID)
		path := filepath.Join(k.cfg.Dir, "pv", name)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"e2e.imcluster.io/claim": pvc.Name}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
				AccessModes:                   pvc.Spec.AccessModes,
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              ptr.Deref(pvc.Spec.StorageClassName, ""),
				ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
					Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}},
			},
		}
		_, err := k.cfg.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			return fmt.Errorf("provision %s/%s: %w", pvc.Namespace, pvc.Name, err)
		default:
			k.cfg.Logf("kubelet: provisioned %s for claim %s/%s", name, pvc.Namespace, pvc.Name)
		}
	}
	return nil
}

// schedule binds p to this Node once every claim it mounts is bound (the
// volume binding a scheduler waits for).
func (k *Kubelet) schedule(ctx context.Context, p *corev1.Pod, claims map[string]*corev1.PersistentVolumeClaim) {
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc := claims[p.Namespace+"/"+v.PersistentVolumeClaim.ClaimName]
		if pvc == nil || pvc.Status.Phase != corev1.ClaimBound {
			return
		}
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.cfg.NodeName},
	}
	if err := k.cfg.Client.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			k.cfg.Logf("kubelet: bind %s/%s: %v", p.Namespace, p.Name, err)
		}
		return
	}
	k.cfg.Logf("kubelet: bound pod %s/%s", p.Namespace, p.Name)
}

// runPod hands the latest pod object to its runner, starting one for a new
// pod.
func (k *Kubelet) runPod(ctx context.Context, p *corev1.Pod) {
	k.mu.Lock()
	r := k.runners[p.UID]
	if r == nil {
		if k.finished[p.UID] || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			k.mu.Unlock()
			return
		}
		r = newPodRunner(k, p, k.ipLocked(p.Namespace, p.Name))
		k.runners[p.UID] = r
		k.mu.Unlock()
		go r.run(ctx)
		return
	}
	k.mu.Unlock()
	r.update(p)
}

// forget removes a finished runner.
func (k *Kubelet) forget(uid types.UID) {
	k.mu.Lock()
	delete(k.runners, uid)
	k.finished[uid] = true
	k.mu.Unlock()
}

// writeHosts renders the DNS names pods use into every pod root's
// /etc/hosts and the extra hosts files: a pod's hostname.subdomain when its
// subdomain is a headless Service of its namespace, and each headless
// Service with a selector to the addresses of its pods (all of them with
// publishNotReadyAddresses, else the ready ones), terminating pods excluded.
// Names are given both as <...>.<namespace>.svc and with .cluster.local.
func (k *Kubelet) writeHosts(pods []corev1.Pod, svcs []corev1.Service) error {
	k.mu.Lock()
	running := map[string]string{} // namespace/name -> IP, for pods with a live runner
	for _, r := range k.runners {
		if r.hasIP() {
			running[r.key()] = r.ip
		}
	}
	k.mu.Unlock()
	names := map[string][]string{} // name -> IPs
	add := func(name, ip string) {
		for _, n := range []string{name, name + ".cluster.local"} {
			if !slices.Contains(names[n], ip) {
				names[n] = append(names[n], ip)
			}
		}
	}
	for i := range svcs {
		s := &svcs[i]
		if s.Spec.ClusterIP != corev1.ClusterIPNone || len(s.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		for j := range pods {
			p := &pods[j]
			ip, ok := running[p.Namespace+"/"+p.Name]
			if !ok || p.Namespace != s.Namespace || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			if p.Spec.Hostname != "" && p.Spec.Subdomain == s.Name {
				add(fmt.Sprintf("%s.%s.%s.svc", p.Spec.Hostname, s.Name, s.Namespace), ip)
			}
			if p.DeletionTimestamp == nil && (s.Spec.PublishNotReadyAddresses || podIsReady(p)) {
				add(fmt.Sprintf("%s.%s.svc", s.Name, s.Namespace), ip)
			}
		}
	}
	var b strings.Builder
	b.WriteString("# Written by the imcluster e2e test kubelet.\n127.0.0.1\tlocalhost\n")
	for _, n := range slices.Sorted(maps.Keys(names)) {
		ips := names[n]
		sort.Strings(ips)
		for _, ip := range ips {
			fmt.Fprintf(&b, "%s\t%s\n", ip, n)
		}
	}
	content := b.String()
	k.mu.Lock()
	changed := content != k.hosts
	k.hosts = content
	roots := make([]string, 0, len(k.runners))
	for _, r := range k.runners {
		roots = append(roots, r.root)
	}
	k.mu.Unlock()
	if !changed {
		return nil
	}
	var errs []error
	for _, f := range k.cfg.HostsFiles {
		errs = append(errs, os.WriteFile(f, []byte(content), 0o644))
	}
	for _, root := range roots {
		errs = append(errs, writeHostsFile(root, content))
	}
	return errors.Join(errs...)
}

// writeHostsFile replaces root/etc/hosts (a plain file in the pod root, so a
// rename is atomic for readers).
func writeHostsFile(root, content string) error {
	dir := filepath.Join(root, "etc")
	if _, err := os.Stat(dir); err != nil {
		return nil //nolint:nilerr // the pod's root is being set up or torn down: it reads the hosts on setup
	}
	tmp := filepath.Join(dir, ".hosts.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "hosts"))
}

// currentHosts returns the hosts content last rendered.
func (k *Kubelet) currentHosts() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.hosts == "" {
		return "127.0.0.1\tlocalhost\n"
	}
	return k.hosts
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
