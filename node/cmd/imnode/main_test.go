package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/pki"
)

// imnodeBin is built once by TestMain.
var imnodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imnode-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imnodeBin = filepath.Join(dir, "imnode")
	build := exec.Command("go", "build", "-o", imnodeBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build imnode:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// process is an imnode child process.
type process struct {
	cmd           *exec.Cmd
	client, admin string
}

func startProcess(t *testing.T, dataDir string, extra ...string) *process {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr.json")
	args := append([]string{"--data-dir", dataDir, "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--cluster-profile", "local",
		"--insecure", "--dev-app", "--addr-file", addrFile, "--log-level", "warn"}, extra...)
	if !slices.Contains(extra, "--config") {
		args = append(args, "--bootstrap") // a single node forms its own cluster
	}
	cmd := exec.Command(imnodeBin, args...)
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(addrFile)
		if err == nil {
			var addrs struct{ Client, Admin string }
			if err := json.Unmarshal(data, &addrs); err != nil {
				t.Fatalf("addr file: %v", err)
			}
			p.client, p.admin = addrs.Client, addrs.Admin
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("imnode did not write its addr file within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *process) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
}

func dial(t *testing.T, ctx context.Context, addr, clientID string) *client.IMClient {
	t.Helper()
	cfg := client.DefaultConfig(apps.DevAppID, "ws://"+addr)
	cfg.NoReconnect = true
	conn, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl, err := conn.Login(ctx, clientID, client.LoginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestIMNodeAckedMessageSurvivesSIGKILL: a message whose ack the client saw
// is in history after the process was killed with SIGKILL right after the
// ack and restarted on the same data directory.
func TestIMNodeAckedMessageSurvivesSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	p := startProcess(t, dataDir)
	tom := dial(t, ctx, p.client, "Tom")
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{"Jerry"}, Name: "Tom & Jerry", Unique: true})
	if err != nil {
		t.Fatal(err)
	}
	var acked []*client.Message
	for i := range 20 {
		m, err := conv.Send(ctx, client.NewText(fmt.Sprintf("message %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m)
	}
	p.kill9(t)

	p = startProcess(t, dataDir)
	jerry := dial(t, ctx, p.client, "Jerry")
	got, err := jerry.Conversation(conv.ID()).QueryMessages(ctx, client.HistoryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(acked) {
		t.Fatalf("history after SIGKILL has %d messages, want %d", len(got), len(acked))
	}
	for i, m := range acked {
		if got[i].ID != m.ID || !got[i].Timestamp.Equal(m.Timestamp) || got[i].From != "Tom" {
			t.Fatalf("message %d after restart = %+v, want id %s at %v", i, got[i], m.ID, m.Timestamp)
		}
	}
}

// operatorConfig is the node configuration file as the operator renders it
// into the ConfigMap (operator/internal/controller, desiredConfigMap).
const operatorConfig = `{
  "clusterName": "chat",
  "shards": 256,
  "replicationFactor": %d,
  "writeQuorum": %d,
  "retention": "4320h0m0s",
  "clientPort": 8080,
  "adminPort": 8081,
  "peerPort": 7946,
  "join": "chat-peers.default.svc:7946",
  "dataDir": "/var/lib/imnode",
  "extra": {"idle-timeout": "300s"}
}`

func writeConfig(t *testing.T, rf, wq int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imnode.json")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(operatorConfig, rf, wq)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// operatorArgs are the container args of the operator's StatefulSet, with
// addresses on 127.0.0.1 port 0.
func operatorArgs(config, nodeID string) []string {
	return []string{"--config", config, "--node-id", nodeID, "--peer-addr", "127.0.0.1:0", "--advertise-host", nodeID + ".chat-peers.default.svc",
		"--bootstrap-node", "chat-0", "--cluster-id", "3f1c0c6e-uid"}
}

func TestIMNodeStartsAsTheOperatorRunsItAndPrestopDrains(t *testing.T) {
	p := startProcess(t, t.TempDir(), operatorArgs(writeConfig(t, 1, 1), "chat-0")...)
	ready := func() int {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != 200 {
		t.Fatalf("/readyz = %d before prestop", code)
	}
	out, err := exec.Command(imnodeBin, "prestop", "--admin-addr", p.admin, "--timeout", "10s").CombinedOutput()
	if err != nil {
		t.Fatalf("prestop: %v: %s", err, out)
	}
	if code := ready(); code != 503 {
		t.Fatalf("/readyz = %d after prestop, want 503 while draining", code)
	}
}

func TestIMNodeRefusesBadQuorum(t *testing.T) {
	args := []string{"--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--insecure", "--dev-app",
		"--config", writeConfig(t, 2, 3), "--node-id", "chat-0"}
	out, err := exec.Command(imnodeBin, args...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "--write-quorum 3 must be in [1, --replication-factor 2]") {
		t.Fatalf("imnode %v: err %v, output %q; want a refusal of W > R", args, err, out)
	}
}

func TestIMNodeConfigFileRejectsUnknownSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imnode.json")
	if err := os.WriteFile(path, []byte(`{"extra": {"no-such-flag": "1"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(imnodeBin, "--config", path, "--data-dir", t.TempDir(), "--insecure", "--dev-app").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown setting "no-such-flag"`) {
		t.Fatalf("unknown extra setting: err %v, output %q", err, out)
	}
}

func TestIMNodeRefusesToStartWithoutCredentials(t *testing.T) {
	apps := filepath.Join(t.TempDir(), "apps.json")
	if err := os.WriteFile(apps, []byte(`{"apps":[{"appId":"a","appKey":"k","masterKey":"m"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing", []string{"--apps-file", apps}, "missing --peer-ca-file, --peer-cert-file, --peer-key-file, --gossip-keyring-file, --admin-token"},
		{"token only", []string{"--apps-file", apps, "--admin-token", "t"}, "missing --peer-ca-file, --peer-cert-file, --peer-key-file, --gossip-keyring-file"},
		{"dev app", []string{"--dev-app"}, "--dev-app requires --insecure"},
		{"half peer TLS", []string{"--apps-file", apps, "--insecure", "--peer-ca-file", "ca.pem"}, "go together"},
		{"no public host", []string{"--apps-file", apps, "--peer-ca-file", "ca.pem", "--peer-cert-file", "node.pem", "--peer-key-file", "node-key.pem",
			"--gossip-keyring-file", "keyring", "--admin-token", "t"}, "--public-url or --allowed-hosts is required unless --insecure"},
	} {
		out, err := exec.Command(imnodeBin, append(base, tc.args...)...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), tc.want) {
			t.Fatalf("%s: err %v, output %q; want a refusal naming %q", tc.name, err, out, tc.want)
		}
	}
}

func TestIMNodeHelpListsSubcommandsAndVariables(t *testing.T) {
	out, err := exec.Command(imnodeBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("imnode --help: %v (want exit 0): %s", err, out)
	}
	for _, want := range []string{"imnode prestop", "imnode upgrade-store", "--data-dir string  (IMNODE_DATA_DIR)", "--bootstrap  (IMNODE_BOOTSTRAP)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("imnode --help does not mention %q:\n%s", want, out)
		}
	}
}

// Errors name the flags to fix, and a start that would fork a cluster
// exits non-zero at once.
func TestIMNodeErrorsNameFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--insecure", "--dev-app"}, "imnode: --data-dir is required"},
		{[]string{"--insecure", "--dev-app", "--data-dir", t.TempDir(), "--shards", "-1"}, "imnode: --shards must be in [1, "},
		{[]string{"--insecure", "--dev-app", "--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
			"a new node needs --join (gossip address of a running node), or --bootstrap to create a new cluster"},
		{[]string{"no-such-subcommand"}, `unknown subcommand or argument "no-such-subcommand"`},
	} {
		out, err := exec.Command(imnodeBin, tc.args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 || !strings.Contains(string(out), tc.want) {
			t.Errorf("imnode %v: %v, output %q; want a non-zero exit saying %q", tc.args, err, out, tc.want)
		}
	}
}

func TestIMNodeInsecureWarnsAtStart(t *testing.T) {
	var log strings.Builder
	addrFile := filepath.Join(t.TempDir(), "addr.json")
	cmd := exec.Command(imnodeBin, "--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--cluster-profile", "local", "--insecure", "--bootstrap", "--dev-app", "--addr-file", addrFile, "--log-level", "warn")
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(addrFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imnode did not start: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	for _, want := range []string{"level=WARN", "Running insecure", "peer transport without TLS", "gossip unencrypted", "admin API without token"} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("insecure start log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestIMNodeUpgradeStore(t *testing.T) {
	dir := t.TempDir()
	p := startProcess(t, dir)
	out, err := exec.Command(imnodeBin, "upgrade-store", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("upgrade-store of a running node's directory: %v, %q; want the lock refusal", err, out)
	}
	p.kill9(t)
	out, err = exec.Command(imnodeBin, "upgrade-store", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "store already at format") {
		t.Fatalf("upgrade-store: %v, %q", err, out)
	}
}

func TestIMNodeCertsIssueUsableCredentials(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"certs", "create-ca", "--certs-dir", dir},
		{"certs", "create-node", "--certs-dir", dir, "--node-id", "imnode-1", "--hosts", "imnode-1.peers,127.0.0.1"},
	} {
		if out, err := exec.Command(imnodeBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("imnode %v: %v: %s", args, err, out)
		}
	}
	f, err := pki.LoadFiles(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "imnode-1.crt"), filepath.Join(dir, "imnode-1.key"))
	if err != nil {
		t.Fatalf("issued credentials: %v", err)
	}
	if f.NodeID() != "imnode-1" {
		t.Fatalf("certificate names %q, want imnode-1", f.NodeID())
	}
	info, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, %v; want mode 0600", err, info)
	}
	// Never overwrite a key.
	if out, err := exec.Command(imnodeBin, "certs", "create-ca", "--certs-dir", dir).CombinedOutput(); err == nil {
		t.Fatalf("create-ca over an existing CA succeeded: %s", out)
	}
}

// A new node whose seeds do not answer keeps waiting, not ready, and never
// forms a cluster of its own (it formed one after 10 s before).
func TestIMNodeNewNodeWithoutAnsweringSeedsWaits(t *testing.T) {
	var log syncBuffer
	addrFile := filepath.Join(t.TempDir(), "addr.json")
	cmd := exec.Command(imnodeBin, "--data-dir", t.TempDir(), "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--cluster-profile", "local", "--insecure", "--dev-app", "--addr-file", addrFile,
		"--join", "127.0.0.1:1")
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done //nolint:errcheck // killed: its exit status says only that
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "No seed answered; waiting for the cluster") {
		select {
		case err := <-done:
			t.Fatalf("imnode exited (%v) instead of waiting:\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 'waiting for the cluster' line within 30s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Past the join wait it still does not serve: no addr file, no
	// "Serving" line, still running.
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(addrFile); err == nil || strings.Contains(log.String(), "msg=Serving") {
		t.Fatalf("a node whose seeds never answered serves:\n%s", log.String())
	}
	select {
	case err := <-done:
		t.Fatalf("imnode exited (%v):\n%s", err, log.String())
	default:
	}
}

// syncBuffer is a strings.Builder safe for the exec copier goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
