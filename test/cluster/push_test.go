package cluster_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/hooks"
	"github.com/imcluster/imcluster/node/push"
	"github.com/imcluster/imcluster/test/harness"
)

// pushReceiver is an app's push service: it records every request and
// accepts them only once accept is set.
type pushReceiver struct {
	mu       sync.Mutex
	attempts []pushAttempt
	accept   bool
}

type pushAttempt struct {
	node     string
	body     push.Body
	accepted bool
}

func (p *pushReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	if hooks.Verify("push-secret", r.Header, raw, time.Now(), time.Minute) != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b push.Body
	_ = json.Unmarshal(raw, &b)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts = append(p.attempts, pushAttempt{node: r.Header.Get("X-Imnode-Node"), body: b, accepted: p.accept})
	if !p.accept {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *pushReceiver) snapshot() []pushAttempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pushAttempt(nil), p.attempts...)
}

// TestClusterPushSurvivesCoordinatorKill: the push of a message to an
// offline member fails at the push service; the node retrying it is killed
// (SIGKILL) mid-retry; another node continues from the push entry stored
// with the message and delivers it once, with the same idempotency key.
func TestClusterPushSurvivesCoordinatorKill(t *testing.T) {
	recv := &pushReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	appsFile := filepath.Join(t.TempDir(), "apps.json")
	const appID = "push-app"
	data, _ := json.Marshal(map[string]any{"apps": []any{map[string]any{
		"appId": appID, "appKey": "push-app-key", "masterKey": "push-app-master",
		"hooks": map[string]any{"secret": "push-secret", "pushUrl": srv.URL},
	}}})
	mustNoErr(t, os.WriteFile(appsFile, data, 0o600))
	c := harness.Start(t, 3, harness.Options{ExtraArgs: []string{"--apps-file", appsFile}})
	nodes := c.Nodes()

	ctx := testCtx(t)
	cfg := client.DefaultConfig(appID, c.ClientURLs(nodes[0])...)
	cfg.AppKey = "push-app-key"
	conn, err := client.Dial(ctx, cfg)
	mustNoErr(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	tom, err := conn.Login(ctx, uid("Tom"), client.LoginOptions{})
	mustNoErr(t, err)
	mary := uid("Mary") // never logs in: offline
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{mary}})
	mustNoErr(t, err)
	m, _ := sendRetrying(ctx, t, conv, "are you there?")

	// The first attempts fail; note the node making them and kill it once
	// it retried: a retry proves that the failed attempt was counted in the
	// entry stored with the message (a kill right after the first attempt
	// may come before that commit, and the next coordinator then rightly
	// starts again at attempt 0).
	var first pushAttempt
	harness.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, a := range recv.snapshot() {
			if a.body.Attempt >= 1 {
				first = a
				return nil
			}
		}
		return errNotYet
	})
	if first.body.MsgID != m.ID || len(first.body.Recipients) != 1 || first.body.Recipients[0] != mary ||
		first.body.IdempotencyKeys[mary] != m.ID+":"+mary || first.body.Payload["alert"] != "are you there?" {
		t.Fatalf("first attempt %+v", first.body)
	}
	killed := c.NodeByID(first.node)
	if killed == nil {
		t.Fatalf("push came from unknown node %q", first.node)
	}
	killed.Kill(t)
	recv.mu.Lock()
	recv.accept = true
	recv.mu.Unlock()

	// Another node delivers it, once.
	var delivered pushAttempt
	harness.CheckFor(t, 40*time.Second, 100*time.Millisecond, func() error {
		for _, a := range recv.snapshot() {
			if a.accepted {
				delivered = a
				return nil
			}
		}
		return errNotYet
	})
	if delivered.node == first.node || delivered.body.MsgID != m.ID || delivered.body.IdempotencyKeys[mary] != m.ID+":"+mary ||
		delivered.body.Attempt < 1 {
		t.Fatalf("delivery after the kill %+v from %s (first from %s)", delivered.body, delivered.node, first.node)
	}
	// The killed node comes back with its copy of the shard; the deleted
	// entry stays deleted and nobody pushes again.
	killed.Restart(t)
	c.WaitReplicasAgree(t, 60*time.Second)
	time.Sleep(3 * time.Second) // several push-loop periods: an absence can only be observed over time
	accepted := 0
	for _, a := range recv.snapshot() {
		if a.body.MsgID != m.ID {
			t.Fatalf("unexpected push %+v", a.body)
		}
		if a.accepted {
			accepted++
		}
	}
	if accepted != 1 {
		t.Fatalf("%d accepted deliveries of one push, want 1", accepted)
	}
}

var errNotYet = errors.New("not yet")
