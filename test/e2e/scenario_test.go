//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/test/chaos"
)

// Load shape: 6 senders, one message each per 150 ms (40 messages per
// second), 6 conversations of 3 members. Enough that every step of the
// operator happens with writes in flight, little enough for 2 shared cores.
const (
	senders      = 6
	sendInterval = 150 * time.Millisecond
	stepTimeout  = 6 * time.Minute
)

// result is what a scenario prints.
type result struct {
	name          string
	dur           time.Duration
	attempts      int
	acked, lost   int
	abandoned     int
	underRep      time.Duration
	errs, events  map[string]int
	notes         []string
	verifiedTotal int
}

func (r result) String() string {
	var errs []string
	for _, k := range slices.Sorted(maps.Keys(r.errs)) {
		errs = append(errs, fmt.Sprintf("%s=%d", k, r.errs[k]))
	}
	if len(errs) == 0 {
		errs = []string{"none"}
	}
	var evs []string
	for _, k := range slices.Sorted(maps.Keys(r.events)) {
		evs = append(evs, fmt.Sprintf("%s=%d", k, r.events[k]))
	}
	s := fmt.Sprintf("%-27s duration %6s  acknowledged %5d  lost %d  under-replicated %6s  client errors: %s",
		r.name, r.dur.Round(100*time.Millisecond), r.acked, r.lost, r.underRep.Round(100*time.Millisecond), strings.Join(errs, " "))
	if len(evs) > 0 {
		s += "  connection events: " + strings.Join(evs, " ")
	}
	if len(r.notes) > 0 {
		s += "  (" + strings.Join(r.notes, "; ") + ")"
	}
	return s
}

// ledgerRun is the acknowledged messages of one scenario's load, kept to
// be verified again after every later scenario.
type ledgerRun struct {
	convs []string
	acks  []chaos.Ack
}

// scenario is one step under load.
type scenario struct {
	w      *world
	t      *testing.T
	ctx    context.Context
	name   string
	ledger *chaos.Ledger
	load   *chaos.Load
	notes  []string

	urMu       sync.Mutex
	underRep   time.Duration
	stopSample context.CancelFunc
	sampled    chan struct{}
}

var (
	pastMu   sync.Mutex
	pastRuns []ledgerRun
)

func (w *world) run(name string, f func(*scenario)) result {
	s := &scenario{w: w, t: w.t, ctx: w.t.Context(), name: name, ledger: chaos.NewLedger()}
	w.t.Logf("==== scenario %s", name)
	start := time.Now()
	s.startSampler()
	f(s)
	res := s.finish()
	res.dur = time.Since(start)
	return res
}

func (s *scenario) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.notes = append(s.notes, msg)
	s.t.Logf("%s: %s", s.name, msg)
}

// startLoad starts the senders on the ready pods' client URLs.
func (s *scenario) startLoad() {
	urls := s.clientURLs()
	if len(urls) == 0 {
		s.t.Fatal("no ready pod to send to")
	}
	logger := slog.New(slog.NewTextHandler(testWriter{s.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := chaos.StartLoad(s.ctx, chaos.LoadConfig{AppID: appID, Senders: senders, Interval: sendInterval,
		Seed: uint64(time.Now().UnixNano()), Logger: logger}, urls, s.ledger)
	if err != nil {
		s.t.Fatal(err)
	}
	s.load = l
}

// refreshURLs points new connections at the pods that are ready now.
func (s *scenario) refreshURLs() {
	if s.load != nil {
		if urls := s.clientURLs(); len(urls) > 0 {
			s.load.SetURLs(urls)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// pods returns the cluster's pods by name.
func (s *scenario) pods() map[string]*corev1.Pod {
	list := &corev1.PodList{}
	if err := s.w.c.List(s.ctx, list, client.InNamespace(ns),
		client.MatchingLabels{"app.kubernetes.io/instance": imcName}); err != nil {
		s.t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

func (s *scenario) clientURLs() []string {
	var urls []string
	pods := s.pods()
	for _, name := range slices.Sorted(maps.Keys(pods)) {
		p := pods[name]
		if podIsReady(p) && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			urls = append(urls, fmt.Sprintf("ws://%s:%d/", p.Status.PodIP, imv1.DefaultClientPort))
		}
	}
	return urls
}

// admins returns admin API clients of the running pods (by node id).
func (s *scenario) admins() map[string]*adminapi.Client {
	out := map[string]*adminapi.Client{}
	for name, p := range s.pods() {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			out[name] = adminapi.NewClient(fmt.Sprintf("http://%s:%d", p.Status.PodIP, imv1.DefaultAdminPort), s.w.token,
				&http.Client{Timeout: adminapi.DefaultTimeout})
		}
	}
	return out
}

// startSampler measures how long any node reports an under-replicated
// shard: it asks one answering node for its cluster view every 500 ms.
func (s *scenario) startSampler() {
	ctx, cancel := context.WithCancel(s.ctx)
	s.stopSample, s.sampled = cancel, make(chan struct{})
	go func() {
		defer close(s.sampled)
		last := time.Now()
		for transport.Sleep(ctx, 500*time.Millisecond) {
			now := time.Now()
			if s.w.token == "" {
				last = now
				continue
			}
			under := false
			for _, ac := range s.admins() {
				cs, err := ac.Cluster(ctx)
				if err == nil {
					under = len(cs.UnderReplicated) > 0
					break
				}
			}
			if under {
				s.urMu.Lock()
				s.underRep += now.Sub(last)
				s.urMu.Unlock()
			}
			last = now
		}
	}()
}

// imc returns the IMCluster.
func (s *scenario) imc() *imv1.IMCluster {
	c := &imv1.IMCluster{}
	if err := s.w.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: imcName}, c); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// patch changes the IMCluster's spec with f (merge patch).
func (s *scenario) patch(f func(c *imv1.IMCluster)) {
	c := s.imc()
	before := c.DeepCopy()
	f(c)
	if err := s.w.c.Patch(s.ctx, c, client.MergeFrom(before)); err != nil {
		s.t.Fatal(err)
	}
}

// poll calls f every 500 ms until it reports done or timeout passes.
func poll(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	// Fail a minute before go test's -timeout: its panic skips the cleanups
	// that stop the control plane.
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	why := ""
	for {
		var ok bool
		if ok, why = f(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		if !transport.Sleep(t.Context(), 500*time.Millisecond) {
			t.Fatalf("interrupted waiting for %s", what)
		}
	}
}

func (s *scenario) poll(what string, timeout time.Duration, f func() (bool, string)) {
	s.t.Helper()
	poll(s.t, what, timeout, func() (bool, string) {
		s.w.checkProcesses()
		s.refreshURLs()
		return f()
	})
}

func condStatus(c *imv1.IMCluster, typ string) metav1.ConditionStatus {
	if cond := meta.FindStatusCondition(c.Status.Conditions, typ); cond != nil {
		return cond.Status
	}
	return ""
}

// settledStatus says why the status does not (yet) describe a converged
// cluster of n nodes on version, or "".
func (s *scenario) settledStatus(n int32, version string) string {
	c := s.imc()
	pods := s.pods()
	st := c.Status
	switch {
	case st.ObservedGeneration != c.Generation:
		return fmt.Sprintf("observedGeneration %d, generation %d", st.ObservedGeneration, c.Generation)
	case st.Phase != imv1.PhaseRunning:
		return fmt.Sprintf("phase %s", st.Phase)
	case st.Replicas != n || st.ReadyReplicas != n || st.UpdatedReplicas != n:
		return fmt.Sprintf("replicas %d ready %d updated %d, want %d", st.Replicas, st.ReadyReplicas, st.UpdatedReplicas, n)
	case len(pods) != int(n):
		return fmt.Sprintf("%d pods", len(pods))
	case st.CurrentVersion != version:
		return fmt.Sprintf("currentVersion %q", st.CurrentVersion)
	case st.Shards.UnderReplicated != 0 || st.Shards.Moving != 0:
		return fmt.Sprintf("%d shards under-replicated, %d moving", st.Shards.UnderReplicated, st.Shards.Moving)
	}
	for typ, want := range map[string]metav1.ConditionStatus{
		imv1.ConditionAvailable: metav1.ConditionTrue, imv1.ConditionProgressing: metav1.ConditionFalse,
		imv1.ConditionDegraded: metav1.ConditionFalse, imv1.ConditionRebalancing: metav1.ConditionFalse,
		imv1.ConditionReconciliationPaused: metav1.ConditionFalse,
	} {
		if got := condStatus(c, typ); got != want {
			cond := meta.FindStatusCondition(c.Status.Conditions, typ)
			msg := ""
			if cond != nil {
				msg = cond.Reason + ": " + cond.Message
			}
			return fmt.Sprintf("condition %s is %q (%s), want %s", typ, got, msg, want)
		}
	}
	if len(st.Members) != int(n) {
		return fmt.Sprintf("%d members", len(st.Members))
	}
	for i, m := range st.Members {
		want := fmt.Sprintf("%s-%d", imcName, i)
		if m.Pod != want || pods[want] == nil {
			return fmt.Sprintf("member %d is %s, want pod %s", i, m.Pod, want)
		}
		if m.State != string(adminapi.StateActive) || !m.Ready || m.Version != version || m.Shards == 0 {
			return fmt.Sprintf("member %s: state %s ready %v version %s shards %d", m.Pod, m.State, m.Ready, m.Version, m.Shards)
		}
	}
	return ""
}

// finish waits for the cluster to converge, stops the load and checks every
// acknowledged message (of this and all earlier scenarios) on every replica.
func (s *scenario) finish() result {
	res := result{name: s.name}
	c := s.imc()
	n, version := c.Spec.Replicas, c.Spec.Version
	s.poll("a truthful Running status", stepTimeout, func() (bool, string) {
		why := s.settledStatus(n, version)
		return why == "", why
	})
	nodes := s.admins()
	took, err := chaos.Settle(s.ctx, nodes, 3, 500*time.Millisecond, 3*time.Minute)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("%s: replicas settled (equal shard digests on every replica) %s after the status", s.name, took.Round(100*time.Millisecond))
	if s.load != nil {
		s.load.Stop()
	}
	s.stopSample()
	<-s.sampled
	res.attempts, res.acked, res.abandoned = s.ledger.Counts()
	res.errs, res.events = s.ledger.Errors(), s.ledger.Events()
	res.underRep, res.notes = s.underRep, s.notes
	if s.load != nil {
		pastMu.Lock()
		pastRuns = append(pastRuns, ledgerRun{convs: s.load.Conversations(), acks: s.ledger.Acks()})
		pastMu.Unlock()
	}
	// Settle again: the last messages were in flight when the load stopped.
	if _, err := chaos.Settle(s.ctx, nodes, 3, 500*time.Millisecond, time.Minute); err != nil {
		s.t.Fatal(err)
	}
	pastMu.Lock()
	runs := slices.Clone(pastRuns)
	pastMu.Unlock()
	for i, run := range runs {
		rep, err := chaos.Verify(s.ctx, nodes, appID, run.convs, run.acks, 3)
		if err != nil {
			s.t.Fatal(err)
		}
		if i == len(runs)-1 && s.load != nil {
			res.lost = rep.Lost
		}
		res.verifiedTotal += rep.Acked
		if err := rep.Err(); err != nil {
			s.t.Fatalf("%s: messages of scenario %d: %v", s.name, i+1, err)
		}
	}
	if res.acked == 0 {
		s.t.Fatalf("%s: no message was acknowledged under load", s.name)
	}
	s.note("%d acknowledged messages of %d scenarios verified on every replica", res.verifiedTotal, len(runs))
	res.notes = s.notes
	return res
}

// events returns the operator's events about the IMCluster, oldest first.
func (s *scenario) events() []eventsv1.Event {
	list := &eventsv1.EventList{}
	if err := s.w.c.List(s.ctx, list, client.InNamespace(ns)); err != nil {
		s.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "IMCluster" && e.Regarding.Name == imcName {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	return out
}

// eventTime is when the event last happened: a repeat of an earlier event
// (the same node drained twice) is recorded as a series on the first one.
func eventTime(e eventsv1.Event) time.Time {
	t := e.CreationTimestamp.Time
	if !e.EventTime.IsZero() {
		t = e.EventTime.Time
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.DeprecatedLastTimestamp.After(t) {
		t = e.DeprecatedLastTimestamp.Time
	}
	return t
}

// expectEvents checks that events since `since` contain the given
// reason+note substrings in this order.
func (s *scenario) expectEvents(since time.Time, want ...[2]string) {
	s.t.Helper()
	s.poll("events "+fmt.Sprint(want), 30*time.Second, func() (bool, string) {
		i := 0
		var seen []string
		for _, e := range s.events() {
			if eventTime(e).Before(since.Add(-time.Second)) {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Note)
			if i < len(want) && e.Reason == want[i][0] && strings.Contains(e.Note, want[i][1]) {
				i++
			}
		}
		return i == len(want), "events seen: " + strings.Join(seen, " | ")
	})
}

func (s *scenario) statefulSet() *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{}
	if err := s.w.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: imcName}, sts); err != nil {
		s.t.Fatal(err)
	}
	return sts
}

func podName(i int) string { return fmt.Sprintf("%s-%d", imcName, i) }

// ---- the scenarios ----

// create: a new IMCluster of 3 nodes comes up one node at a time and
// reaches Running; the load starts as soon as it is Available.
func (s *scenario) create() {
	c := &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: imcName, Namespace: ns},
		Spec: imv1.IMClusterSpec{
			Replicas: 3, Version: versionA, Shards: 64, ReplicationFactor: 3, WriteQuorum: 2,
			AppsSecretRef: &corev1.LocalObjectReference{Name: "chat-apps"},
			Storage:       imv1.StorageSpec{ReclaimPolicy: imv1.ReclaimDelete},
			// All nodes share one machine: the local failure-detection timings.
			ExtraConfig: map[string]string{"cluster-profile": "local"},
		},
	}
	since := time.Now()
	if err := s.w.c.Create(s.ctx, c); err != nil {
		s.t.Fatal(err)
	}
	s.w.adminToken()
	s.poll("the cluster to be Available", stepTimeout, func() (bool, string) {
		c := s.imc()
		return condStatus(c, imv1.ConditionAvailable) == metav1.ConditionTrue && len(s.clientURLs()) > 0,
			fmt.Sprintf("phase %s, ready %d", c.Status.Phase, c.Status.ReadyReplicas)
	})
	s.note("Available after %s", time.Since(since).Round(time.Second))
	s.startLoad()
	s.poll("3 nodes Running", stepTimeout, func() (bool, string) {
		why := s.settledStatus(3, versionA)
		return why == "", why
	})
	s.note("Running after %s", time.Since(since).Round(time.Second))
	s.checkRoute()
	s.expectEvents(since, [2]string{"StatefulSetCreated", "with 1 of 3 nodes"})
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := s.w.c.List(s.ctx, pvcs, client.InNamespace(ns)); err != nil {
		s.t.Fatal(err)
	}
	if len(pvcs.Items) != 3 {
		s.t.Fatalf("%d claims, want 3", len(pvcs.Items))
	}
}

// checkRoute asks a node's /v1/route as an SDK would, under the names the
// operator lets the nodes serve (--allowed-hosts): the client Service's and
// the pod's own are answered with a URL on that name; any other Host is
// refused (400, code 107) rather than echoed.
func (s *scenario) checkRoute() {
	p := s.pods()[podName(0)]
	route := func(host string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(s.ctx, http.MethodGet,
			fmt.Sprintf("http://%s:%d/v1/route?appId=%s", p.Status.PodIP, imv1.DefaultClientPort, appID), nil)
		if err != nil {
			s.t.Fatal(err)
		}
		req.Host = fmt.Sprintf("%s:%d", host, imv1.DefaultClientPort)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body := map[string]any{}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			s.t.Fatalf("/v1/route with Host %s: %v", host, err)
		}
		return resp.StatusCode, body
	}
	for _, host := range []string{imcName + "." + ns + ".svc", imcName + "." + ns + ".svc.cluster.local",
		podName(0) + "." + imcName + "-peers." + ns + ".svc"} {
		code, body := route(host)
		want := fmt.Sprintf("ws://%s:%d", host, imv1.DefaultClientPort)
		if code != http.StatusOK || body["server"] != want {
			s.t.Fatalf("/v1/route with Host %s: %d %v, want 200 and server %s", host, code, body, want)
		}
	}
	if code, body := route("attacker.example"); code != http.StatusBadRequest || body["code"] != float64(107) {
		s.t.Fatalf("/v1/route with a foreign Host: %d %v, want 400 and code 107", code, body)
	}
	s.note("/v1/route answers for the client Service's and the pod's names, refuses other hosts (400, 107)")
}

// scaleUp: 3 -> 5. New nodes join one at a time; shards move to them
// (Rebalancing true, then false) and every node ends up holding and
// coordinating shards.
func (s *scenario) scaleUp() {
	s.startLoad()
	since := time.Now()
	sawRebalancing := false
	s.patch(func(c *imv1.IMCluster) { c.Spec.Replicas = 5 })
	s.poll("5 nodes Running", stepTimeout, func() (bool, string) {
		if condStatus(s.imc(), imv1.ConditionRebalancing) == metav1.ConditionTrue {
			sawRebalancing = true
		}
		why := s.settledStatus(5, versionA)
		return why == "", why
	})
	if !sawRebalancing {
		s.t.Fatal("the Rebalancing condition never became True while shards moved to the new nodes")
	}
	s.note("Rebalancing was True, then False; Running with 5 after %s", time.Since(since).Round(time.Second))
	var spread []string
	for _, id := range slices.Sorted(maps.Keys(s.admins())) {
		n, err := s.admins()[id].Node(s.ctx)
		if err != nil {
			s.t.Fatal(err)
		}
		if n.ShardsReplicated == 0 || n.ShardsCoordinated == 0 {
			s.t.Fatalf("node %s holds %d and coordinates %d shards after the scale-up", id, n.ShardsReplicated, n.ShardsCoordinated)
		}
		spread = append(spread, fmt.Sprintf("%s %d/%d", id, n.ShardsReplicated, n.ShardsCoordinated))
	}
	s.note("shards held/coordinated: %s", strings.Join(spread, ", "))
	s.expectEvents(since, [2]string{"ScalingUp", podName(3)}, [2]string{"ScalingUp", podName(4)})
}

// scaleDown: 5 -> 3. Each removed node is drained before its pod goes
// (events Draining then NodeRemoved, highest ordinal first) and its claim
// is deleted (reclaimPolicy Delete); the kept claims stay.
func (s *scenario) scaleDown() {
	s.startLoad()
	since := time.Now()
	drainedBeforeGone := map[string]bool{}
	s.patch(func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	s.poll("3 nodes Running", stepTimeout, func() (bool, string) {
		pods := s.pods()
		for _, id := range []string{podName(3), podName(4)} {
			p := pods[id]
			if p == nil || p.DeletionTimestamp != nil {
				continue
			}
			ac := s.admins()[id]
			if ac == nil {
				continue
			}
			if n, err := ac.Node(s.ctx); err == nil && (n.State == adminapi.StateDraining || n.State == adminapi.StateLeft) {
				drainedBeforeGone[id] = true
			}
		}
		why := s.settledStatus(3, versionA)
		return why == "", why
	})
	s.expectEvents(since,
		[2]string{"Draining", podName(4)}, [2]string{"NodeRemoved", podName(4)},
		[2]string{"Draining", podName(3)}, [2]string{"NodeRemoved", podName(3)},
		[2]string{"VolumeDeleted", ""})
	// The events above prove the order (Draining before NodeRemoved); a
	// drain of this little data can finish between two polls of the test,
	// so seeing the state itself is only reported.
	s.poll("the claims of the removed nodes to be deleted", time.Minute, func() (bool, string) {
		pvcs := &corev1.PersistentVolumeClaimList{}
		if err := s.w.c.List(s.ctx, pvcs, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		var names []string
		for _, p := range pvcs.Items {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		return slices.Equal(names, []string{"data-chat-0", "data-chat-1", "data-chat-2"}), fmt.Sprint(names)
	})
	cs, err := s.admins()[podName(0)].Cluster(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, m := range cs.Members {
		if (m.ID == podName(3) || m.ID == podName(4)) && m.State.OwnsData() {
			s.t.Fatalf("removed node %s is still %s in the roster", m.ID, m.State)
		}
	}
	s.note("seen draining by the test: %v; claims data-chat-3 and -4 deleted", slices.Sorted(maps.Keys(drainedBeforeGone)))
}

// upgrade: version A -> B. Pods are replaced one at a time, highest
// ordinal first, and never more than one is unavailable.
func (s *scenario) upgrade() {
	s.startLoad()
	since := time.Now()
	maxDown := 0
	uids := map[string]string{}
	for n, p := range s.pods() {
		uids[n] = string(p.UID)
	}
	s.patch(func(c *imv1.IMCluster) { c.Spec.Version = versionB })
	s.poll("3 nodes Running on "+versionB, 2*stepTimeout, func() (bool, string) {
		down := 0
		pods := s.pods()
		for i := range 3 {
			if p := pods[podName(i)]; p == nil || !podIsReady(p) || p.DeletionTimestamp != nil {
				down++
			}
		}
		maxDown = max(maxDown, down)
		why := s.settledStatus(3, versionB)
		return why == "", why
	})
	if maxDown > 1 {
		s.t.Fatalf("%d pods were unavailable at once during the rolling update", maxDown)
	}
	for n, p := range s.pods() {
		if uids[n] == string(p.UID) {
			s.t.Fatalf("pod %s was not replaced", n)
		}
		if img := p.Spec.Containers[0].Image; img != imv1.DefaultImageRepository+":"+versionB {
			s.t.Fatalf("pod %s runs %s", n, img)
		}
	}
	s.expectEvents(since, [2]string{"TemplateUpdated", versionB},
		[2]string{"RestartingPod", podName(2)}, [2]string{"RestartingPod", podName(1)}, [2]string{"RestartingPod", podName(0)})
	s.note("one pod at a time (at most %d unavailable), every node reports %s", maxDown, versionB)
}

// deletePod: a deleted pod is recreated by the StatefulSet on the same
// claim and rejoins with the data it had.
func (s *scenario) deletePod() {
	s.startLoad()
	victim := s.pods()[podName(1)]
	pvc := &corev1.PersistentVolumeClaim{}
	if err := s.w.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: "data-" + victim.Name}, pvc); err != nil {
		s.t.Fatal(err)
	}
	before, err := s.admins()[victim.Name].Node(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // let the victim take writes
	deleted := time.Now()
	if err := s.w.c.Delete(s.ctx, victim); err != nil {
		s.t.Fatal(err)
	}
	s.poll("a new "+victim.Name+" to be ready", stepTimeout, func() (bool, string) {
		p := s.pods()[victim.Name]
		return p != nil && p.UID != victim.UID && podIsReady(p), "waiting"
	})
	s.note("recreated and ready %s after the delete", time.Since(deleted).Round(100*time.Millisecond))
	pvc2 := &corev1.PersistentVolumeClaim{}
	if err := s.w.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: pvc.Name}, pvc2); err != nil {
		s.t.Fatal(err)
	}
	if pvc2.UID != pvc.UID || pvc2.Spec.VolumeName != pvc.Spec.VolumeName {
		s.t.Fatalf("claim %s was replaced (volume %s -> %s)", pvc.Name, pvc.Spec.VolumeName, pvc2.Spec.VolumeName)
	}
	after, err := s.admins()[victim.Name].Node(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	if after.ShardsReplicated != before.ShardsReplicated {
		s.t.Fatalf("%s held %d shards before and %d after its restart", victim.Name, before.ShardsReplicated, after.ShardsReplicated)
	}
	s.note("same claim and volume %s, %d shards before and after", pvc.Spec.VolumeName, after.ShardsReplicated)
}

// pauseResume: while paused, a scale to 4 changes nothing (phase Paused,
// ReconciliationPaused true); resumed, the cluster scales to 4.
func (s *scenario) pauseResume() {
	s.startLoad()
	s.patch(func(c *imv1.IMCluster) { c.Spec.Paused = true })
	s.poll("phase Paused", time.Minute, func() (bool, string) {
		c := s.imc()
		return c.Status.Phase == imv1.PhasePaused && condStatus(c, imv1.ConditionReconciliationPaused) == metav1.ConditionTrue &&
			c.Status.ObservedGeneration == c.Generation, string(c.Status.Phase)
	})
	s.patch(func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	hold := time.Now().Add(10 * time.Second)
	for time.Now().Before(hold) {
		if r := ptr.Deref(s.statefulSet().Spec.Replicas, 0); r != 3 {
			s.t.Fatalf("paused, but the StatefulSet was scaled to %d", r)
		}
		if c := s.imc(); c.Status.Phase != imv1.PhasePaused {
			s.t.Fatalf("paused, but phase is %s", c.Status.Phase)
		}
		transport.Sleep(s.ctx, time.Second)
	}
	s.note("paused for 10s with spec.replicas 4: StatefulSet stayed at 3, phase Paused")
	since := time.Now()
	s.patch(func(c *imv1.IMCluster) { c.Spec.Paused = false })
	s.poll("4 nodes Running after resume", stepTimeout, func() (bool, string) {
		why := s.settledStatus(4, versionB)
		return why == "", why
	})
	s.note("resumed: Running with 4 after %s", time.Since(since).Round(time.Second))
}

// operatorRestartMidDrain: 4 -> 3, and the operator that started chat-3's
// drain is killed (SIGKILL) right after the node accepted it. The operator
// reaches chat-3's admin API through adminProxy, which from that answer on
// answers 503, so the killed operator could not have seen the drain end or
// removed the node: the kill lands mid-drain every run, however fast the
// drain. A new operator process then finishes the scale-down by following
// the drain in flight (it must not start another).
func (s *scenario) operatorRestartMidDrain() {
	s.startLoad()
	victim := podName(3)
	pod := s.pods()[victim]
	if pod == nil || pod.Status.PodIP == "" {
		s.t.Fatalf("%s is not running", victim)
	}
	proxy := s.w.startAdminProxy(victim, pod.Status.PodIP)
	// The operator that will drain chat-3 reaches it through the proxy; it
	// takes over the leader lease once the stopped one's expires.
	s.w.stopOperator(syscall.SIGTERM)
	s.w.startOperatorWith(proxy.hosts)
	since := time.Now()
	s.patch(func(c *imv1.IMCluster) { c.Spec.Replicas = 3 })
	if err := proxy.waitDrainStarted(stepTimeout); err != nil {
		s.t.Fatalf("%v within %s", err, stepTimeout)
	}
	s.w.stopOperator(syscall.SIGKILL)
	killed := time.Now()
	s.note("operator killed (SIGKILL) %s after the scale-down began, as %s accepted its drain",
		killed.Sub(since).Round(100*time.Millisecond), victim)
	n, err := s.admins()[victim].Node(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	if n.State != adminapi.StateDraining && n.State != adminapi.StateLeft {
		s.t.Fatalf("%s is %s after the operator started its drain", victim, n.State)
	}
	progress := "unknown"
	if d, err := s.admins()[victim].Drain(s.ctx); err == nil {
		progress = fmt.Sprintf("done %v, %d shards and %d bytes left", d.Done, d.ShardsLeft, d.BytesLeft)
	}
	s.note("%s %s at the kill (drain: %s)", victim, n.State, progress)
	if p := s.pods()[victim]; p == nil || p.DeletionTimestamp != nil {
		s.t.Fatalf("%s went away with the killed operator", victim)
	}
	if r := ptr.Deref(s.statefulSet().Spec.Replicas, 0); r != 4 {
		s.t.Fatalf("the StatefulSet has %d replicas after the kill, want still 4", r)
	}
	proxy.release()
	s.w.startOperatorWith(proxy.hosts)
	s.poll("3 nodes Running after the operator restart", stepTimeout, func() (bool, string) {
		why := s.settledStatus(3, versionB)
		return why == "", why
	})
	if k := proxy.drainsStartedAfterRelease(); k != 0 {
		s.t.Fatalf("the new operator started %d drains of %s instead of following the one in flight", k, victim)
	}
	s.note("the new operator finished the scale-down %s after the kill, following the drain in flight",
		time.Since(killed).Round(time.Second))
	// The Draining event was the killed operator's: events are sent
	// asynchronously, so a SIGKILL may lose it. The removal is the new one's.
	s.expectEvents(since, [2]string{"NodeRemoved", victim})
	drainEvent := false
	for _, e := range s.events() {
		if e.Reason == "Draining" && strings.Contains(e.Note, victim) && !eventTime(e).Before(since.Add(-time.Second)) {
			drainEvent = true
		}
	}
	s.note("the killed operator's Draining event was recorded: %v", drainEvent)
}
