//go:build envtest

package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// fakeNodes serves the admin API of every pod of a test from one httptest
// server, under /<pod>/admin/v1/...: an in-memory twin of the node side of
// node/adminapi. The test (playing kubelet and the data plane) moves the
// nodes' states; the operator only sees them through HTTP.
type fakeNodes struct {
	srv   *httptest.Server
	token string

	mu              sync.Mutex
	nodes           map[string]*fakeNode
	underReplicated []int
	calls           []string // "pod METHOD path", in order
}

type fakeNode struct {
	state     adminapi.NodeState
	version   string
	receiving int
	drainOp   string
	drainDone bool
	// failing makes every admin call answer 503.
	failing bool
	// What the node loaded from its mounted credentials (setCreds).
	gossipKeys, peerCAs []string
	certNotAfter        time.Time
}

func newFakeNodes(t *testing.T, token string) *fakeNodes {
	t.Helper()
	f := &fakeNodes{token: token, nodes: map[string]*fakeNode{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// url is the reconciler's AdminURLFunc.
func (f *fakeNodes) url(_ *imv1.IMCluster, pod string) string { return f.srv.URL + "/" + pod }

func (f *fakeNodes) serve(w http.ResponseWriter, r *http.Request) {
	pod, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	path = "/" + path
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, pod+" "+r.Method+" "+path)
	n := f.nodes[pod]
	if n == nil || n.failing {
		adminapi.WriteError(w, http.StatusServiceUnavailable, "node not running")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		adminapi.WriteError(w, http.StatusUnauthorized, "bad token")
		return
	}
	switch r.Method + " " + path {
	case "GET " + adminapi.PathNode:
		adminapi.WriteJSON(w, http.StatusOK, f.nodeStatusLocked(pod, n))
	case "GET " + adminapi.PathCluster:
		adminapi.WriteJSON(w, http.StatusOK, f.clusterLocked())
	case "POST " + adminapi.PathDrain:
		if n.drainOp == "" {
			n.drainOp = "drain-" + pod
			n.state = adminapi.StateDraining
		}
		adminapi.WriteJSON(w, http.StatusAccepted, adminapi.DrainStarted{Operation: n.drainOp})
	case "GET " + adminapi.PathDrain:
		d := adminapi.DrainStatus{Operation: n.drainOp, Started: n.drainOp != "", Done: n.drainDone}
		if d.Started && !d.Done {
			d.ShardsLeft, d.BytesLeft = 5, 5000
		}
		adminapi.WriteJSON(w, http.StatusOK, d)
	case "DELETE " + adminapi.PathDrain:
		switch n.state {
		case adminapi.StateLeft:
			n.state, n.receiving = adminapi.StateJoining, 1
		case adminapi.StateDraining:
			n.state = adminapi.StateActive
		case adminapi.StateJoining, adminapi.StateActive:
		}
		n.drainOp, n.drainDone = "", false
		w.WriteHeader(http.StatusNoContent)
	case "POST " + adminapi.PathRemove:
		var req adminapi.RemoveRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		delete(f.nodes, req.Node)
		w.WriteHeader(http.StatusNoContent)
	default:
		adminapi.WriteError(w, http.StatusNotFound, "no route")
	}
}

func (f *fakeNodes) nodeStatusLocked(pod string, n *fakeNode) adminapi.NodeStatus {
	st := adminapi.NodeStatus{ID: pod, State: n.state, Version: n.version, Epoch: 1, ShardsReplicated: 10,
		GossipKeys: n.gossipKeys, PeerCAs: n.peerCAs, PeerCertNotAfter: n.certNotAfter}
	for i := range n.receiving {
		st.Receiving = append(st.Receiving, adminapi.ShardTransfer{Shard: i, BytesRemaining: 100, KeysRemaining: 10})
	}
	return st
}

func (f *fakeNodes) clusterLocked() adminapi.ClusterStatus {
	cs := adminapi.ClusterStatus{Epoch: 1, Shards: 16, ReplicationFactor: 3, UnderReplicated: slices.Clone(f.underReplicated)}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range f.nodes {
			if !yield(id) {
				return
			}
		}
	}) {
		n := f.nodes[id]
		cs.Members = append(cs.Members, adminapi.Member{ID: id, State: n.state, Alive: !n.failing, Version: n.version})
		for i := range n.receiving {
			cs.Moves = append(cs.Moves, adminapi.ShardTransfer{Shard: i, To: id})
		}
	}
	return cs
}

// start registers a node process for pod, joining and catching up.
func (f *fakeNodes) start(pod, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[pod] = &fakeNode{state: adminapi.StateJoining, version: version, receiving: 2}
}

// setCreds records what a node reports after loading its credential files.
func (f *fakeNodes) setCreds(pod string, gossipKeys, peerCAs []string, certNotAfter time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[pod]; n != nil {
		n.gossipKeys, n.peerCAs, n.certNotAfter = gossipKeys, peerCAs, certNotAfter
	}
}

func (f *fakeNodes) stop(pod string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, pod)
}

func (f *fakeNodes) update(pod string, fn func(n *fakeNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[pod]; n != nil {
		fn(n)
	}
}

// catchUp makes a joining node active with nothing left to receive.
func (f *fakeNodes) catchUp(pod string) {
	f.update(pod, func(n *fakeNode) {
		if n.state == adminapi.StateJoining {
			n.state = adminapi.StateActive
		}
		n.receiving = 0
	})
}

// finishDrain completes a started drain: the node has handed off and left.
func (f *fakeNodes) finishDrain(pod string) {
	f.update(pod, func(n *fakeNode) {
		if n.drainOp != "" {
			n.state, n.drainDone = adminapi.StateLeft, true
		}
	})
}

func (f *fakeNodes) setUnderReplicated(shards ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.underReplicated = shards
}

func (f *fakeNodes) state(pod string) adminapi.NodeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.nodes[pod]; n != nil {
		return n.state
	}
	return ""
}

// called reports whether the operator made the call "pod METHOD path".
func (f *fakeNodes) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, call)
}

func (f *fakeNodes) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range f.nodes {
			if !yield(id) {
				return
			}
		}
	}) {
		n := f.nodes[id]
		fmt.Fprintf(&b, "%s=%s/%s/recv%d ", id, n.state, n.version, n.receiving)
	}
	return b.String()
}
