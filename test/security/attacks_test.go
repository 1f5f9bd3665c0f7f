package security_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
	"github.com/imcluster/imcluster/test/harness"
)

// TestSecurityAttacks runs the attacks of issue 11 against one three-node
// cluster started with credentials. The removal subtest changes the roster
// and runs last.
func TestSecurityAttacks(t *testing.T) {
	c, cr := startSecure(t, 3, harness.Options{})
	t.Run("GossipImpostorCannotJoin", func(t *testing.T) { gossipImpostor(t, c) })
	t.Run("ForgedLeftChangesNothing", func(t *testing.T) { forgedLeft(t, c) })
	t.Run("TransportWithoutCertificate", func(t *testing.T) { transportWithoutCert(t, c) })
	t.Run("TransportCertificateOfAnotherCA", func(t *testing.T) { transportRogueCA(t, c) })
	t.Run("NodeCannotActUnderAnotherID", func(t *testing.T) { transportWrongID(t, c, cr) })
	t.Run("AdminRequiresToken", func(t *testing.T) { adminRequiresToken(t, c) })
	t.Run("BackupStaysInBackupDir", func(t *testing.T) { backupDir(t, c, cr) })
	t.Run("RemovedNodeRefused", func(t *testing.T) { removedNodeRefused(t, c, cr) })
}

// quietWindow is how long the tests watch for an effect that must not
// happen: several push/pull rounds (500 ms with the local profile) and
// gossip retransmissions.
const quietWindow = 3 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forgedState is a memberlist delegate that offers a forged roster table
// in push/pull exchanges.
type forgedState struct{ table []byte }

func (f forgedState) NodeMeta(int) []byte             { return nil }
func (f forgedState) NotifyMsg([]byte)                {}
func (f forgedState) GetBroadcasts(int, int) [][]byte { return nil }
func (f forgedState) LocalState(bool) []byte          { return f.table }
func (f forgedState) MergeRemoteState([]byte, bool)   {}

// intruder starts a memberlist outside the cluster (no key, or the given
// wrong one), named name, offering state in push/pull.
func intruder(t *testing.T, name string, key []byte, state []byte) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = "127.0.0.1", 0, 0
	mc.LogOutput = io.Discard
	mc.Delegate = forgedState{table: state}
	if key != nil {
		kr, err := memberlist.NewKeyring(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		mc.Keyring = kr
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml
}

func gossipAddrs(c *harness.Cluster) []string {
	var out []string
	for _, nd := range c.Running() {
		out = append(out, nd.GossipAddr())
	}
	return out
}

// expectRoster checks that every running node sees exactly the given
// members, all in state want, for the whole quiet window.
func expectRoster(t *testing.T, c *harness.Cluster, want map[string]adminapi.NodeState) {
	t.Helper()
	deadline := time.Now().Add(quietWindow)
	for time.Now().Before(deadline) {
		for _, nd := range c.Running() {
			cs, err := nd.Admin().Cluster(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]adminapi.NodeState{}
			for _, m := range cs.Members {
				got[m.ID] = m.State
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s sees roster %v, want %v", nd.ID(), got, want)
			}
		}
		time.Sleep(250 * time.Millisecond) // watching for an effect that must not happen
	}
}

func allActive(c *harness.Cluster) map[string]adminapi.NodeState {
	want := map[string]adminapi.NodeState{}
	for _, nd := range c.Running() {
		want[nd.ID()] = adminapi.StateActive
	}
	return want
}

func gossipImpostor(t *testing.T, c *harness.Cluster) {
	for _, key := range [][]byte{nil, newKey(t)} {
		ml := intruder(t, "intruder", key, nil)
		if n, err := ml.Join(gossipAddrs(c)); err == nil || n != 0 {
			t.Fatalf("an intruder (key %v) joined gossip: contacted %d nodes, err %v", key != nil, n, err)
		}
	}
	expectRoster(t, c, allActive(c))
}

// forgedLeft offers, from outside, a roster table saying imnode-2 left with
// a far higher seq: without the gossip key it must change nothing.
func forgedLeft(t *testing.T, c *harness.Cluster) {
	victim := c.Node(2).ID()
	table := []byte{1, 1, byte(len(victim))} // format 1, one entry, id length
	table = append(table, victim...)
	table = append(table, 4) // ring.StateLeft
	table = binary.AppendUvarint(table, 1<<20)
	ml := intruder(t, "imnode-9", nil, table)
	_, _ = ml.Join(gossipAddrs(c)) // refused; what matters is the roster
	expectRoster(t, c, allActive(c))
}

// attacker is a peer transport outside the cluster that dials node ids at
// the cluster's transport addresses.
func attacker(t *testing.T, c *harness.Cluster, id string, tlsSrc transport.TLSSource) *transport.Transport {
	t.Helper()
	cfg := transport.DefaultLocalConfig()
	cfg.NodeID = id
	cfg.ListenAddr = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	if tlsSrc != nil {
		cfg.TLS = tlsSrc
	}
	cfg.Resolve = func(to string) (string, error) {
		if nd := c.NodeByID(to); nd != nil {
			return nd.Addrs().Transport, nil
		}
		return "", fmt.Errorf("unknown node %s", to)
	}
	tr, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Shutdown)
	return tr
}

// dumpForgeDelete tries the three calls of the issue: page through a shard
// (Scan), store through the coordinator (Write) and replicate a write to a
// replica (Replicate, the delete-range path), plus Ping. Every one must fail
// before reaching a handler: no RemoteError (which a handler produces).
func dumpForgeDelete(t *testing.T, tr *transport.Transport, to string) {
	t.Helper()
	for _, m := range []uint16{wire.Scan, wire.Write, wire.Replicate, wire.Command, wire.Ping} {
		_, err := tr.Call(ctxT(t), to, m, []byte{0})
		if err == nil {
			t.Fatalf("method %d to %s succeeded", m, to)
		}
		if _, ok := errors.AsType[*transport.RemoteError](err); ok {
			t.Fatalf("method %d to %s reached the handler: %v", m, to, err)
		}
	}
}

func transportWithoutCert(t *testing.T, c *harness.Cluster) {
	// Claims a member's id over plain TCP.
	tr := attacker(t, c, c.Node(1).ID(), nil)
	dumpForgeDelete(t, tr, c.Node(0).ID())
}

func transportRogueCA(t *testing.T, c *harness.Cluster) {
	rogue := newCreds(t)
	rogue.issue(c.Node(1).ID())
	tr := attacker(t, c, c.Node(1).ID(), rogue.files(c.Node(1).ID()))
	dumpForgeDelete(t, tr, c.Node(0).ID())
}

func transportWrongID(t *testing.T, c *harness.Cluster, cr *creds) {
	// Control: with its own id, a member's certificate gets through (so
	// the refusals below are the protection, not a broken attacker).
	member := c.Node(1).ID()
	if _, err := attacker(t, c, member, cr.files(member)).Call(ctxT(t), c.Node(0).ID(), wire.Ping, nil); err != nil {
		t.Fatalf("control: %s's own certificate: %v", member, err)
	}
	// imnode-1's valid certificate acting as imnode-2.
	tr := attacker(t, c, c.Node(2).ID(), cr.files(member))
	dumpForgeDelete(t, tr, c.Node(0).ID())
}

func adminRequiresToken(t *testing.T, c *harness.Cluster) {
	base := "http://" + c.Node(0).Addrs().Admin
	do := func(method, path, token string) int {
		req, err := http.NewRequestWithContext(ctxT(t), method, base+path, strings.NewReader(`{"dir":"x","node":"imnode-1"}`))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	guarded := []struct{ method, path string }{
		{"GET", adminapi.PathNode}, {"GET", adminapi.PathCluster}, {"GET", adminapi.PathShards},
		{"GET", adminapi.PathDebugMessages + "?app=imcluster-dev&cid=x"}, {"POST", adminapi.PathDrain},
		{"DELETE", adminapi.PathDrain}, {"POST", adminapi.PathGoaway}, {"POST", adminapi.PathRemove},
		{"POST", "/admin/v1/backup"}, {"GET", "/debug/pprof/"}, {"POST", adminapi.PathHealthz},
	}
	for _, g := range guarded {
		for _, token := range []string{"", "wrong-token"} {
			if code := do(g.method, g.path, token); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", g.method, g.path, token, code)
			}
		}
	}
	for _, p := range []string{adminapi.PathHealthz, adminapi.PathReadyz, adminapi.PathMetrics} {
		if code := do("GET", p, ""); code != http.StatusOK {
			t.Errorf("GET %s without token: %d, want 200 (probes and scrapes carry no token)", p, code)
		}
	}
	st, err := c.Node(0).Admin().Node(ctxT(t))
	if err != nil || len(st.GossipKeys) != 1 || len(st.PeerCAs) != 1 || st.PeerCertNotAfter.IsZero() {
		t.Fatalf("GET /admin/v1/node with the token: %+v, %v", st, err)
	}
}

func backupDir(t *testing.T, c *harness.Cluster, cr *creds) {
	post := func(dir string) int {
		req, _ := http.NewRequestWithContext(ctxT(t), "POST", "http://"+c.Node(0).Addrs().Admin+"/admin/v1/backup", strings.NewReader(`{"dir":"`+dir+`"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	outside := t.TempDir()
	for _, dir := range []string{"../outside", outside + "/snap", "/tmp"} {
		if code := post(dir); code != http.StatusBadRequest {
			t.Fatalf("backup to %q: %d, want 400", dir, code)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("a refused backup wrote %v", entries)
	}
	if code := post("snap-1"); code != http.StatusOK {
		t.Fatalf("backup below the backup dir: %d", code)
	}
	if _, err := os.Stat(filepath.Join(cr.path("backups"), "snap-1")); err != nil {
		t.Fatal(err)
	}
}

// removedNodeRefused stops a node and removes it from the roster: its
// certificate stays valid, but the roster check refuses it.
func removedNodeRefused(t *testing.T, c *harness.Cluster, cr *creds) {
	gone := c.Node(2)
	gone.Stop(t)
	ac := c.Node(0).Admin()
	harness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if err := ac.Remove(ctxT(t), gone.ID()); err != nil {
			return err
		}
		cs, err := ac.Cluster(ctxT(t))
		if err != nil {
			return err
		}
		for _, m := range cs.Members {
			if m.ID == gone.ID() && m.State != adminapi.StateLeft {
				return fmt.Errorf("%s is %s", m.ID, m.State)
			}
		}
		return nil
	})
	tr := attacker(t, c, gone.ID(), cr.files(gone.ID()))
	for _, m := range []uint16{wire.Scan, wire.Write, wire.Replicate, wire.Ping} {
		_, err := tr.Call(ctxT(t), c.Node(0).ID(), m, []byte{0})
		re, ok := errors.AsType[*transport.RemoteError](err)
		if !ok || !strings.Contains(re.Message, "not a cluster member") {
			t.Fatalf("method %d from removed %s: %v, want a refusal naming the roster", m, gone.ID(), err)
		}
	}
}
