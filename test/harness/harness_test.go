package harness_test

import (
	"os"
	"testing"
	"time"

	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// TestHarnessSingleNodeLifecycle: one node starts ready, survives Kill +
// Restart on its data directory and ports, and stops cleanly on SIGTERM.
func TestHarnessSingleNodeLifecycle(t *testing.T) {
	c := harness.Start(t, 1, harness.Options{})
	nd := c.Node(0)
	if nd.ID() != "imnode-0" || nd.ClientAddr() == "" || nd.DataDir() == "" {
		t.Fatalf("node = %s %+v %s", nd.ID(), nd.Addrs(), nd.DataDir())
	}
	st, err := nd.Admin().Node(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != nd.ID() {
		t.Fatalf("admin says id %q, want %q", st.ID, nd.ID())
	}
	c.WaitReplicasAgree(t, 10*time.Second)
	nd.Pause(t)
	nd.Resume(t)
	c.WaitConverged(t)
	before := nd.Addrs()
	nd.Kill(t)
	if nd.Running() || len(c.Running()) != 0 {
		t.Fatal("node still running after Kill")
	}
	nd.Restart(t)
	if got := nd.Addrs(); got.Client != before.Client || got.Admin != before.Admin {
		t.Logf("restarted on new ports: %+v, was %+v", got, before)
	}
	if urls := c.ClientURLs(nd); len(urls) != 1 || urls[0] != nd.ClientURL() {
		t.Fatalf("ClientURLs = %v", urls)
	}
	nd.Stop(t)
	if nd.Running() {
		t.Fatal("node running after Stop")
	}
	if len(nd.LogFiles()) != 2 {
		t.Fatalf("log files = %v, want one per run", nd.LogFiles())
	}
}
