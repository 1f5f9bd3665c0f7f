package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
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
	cmd    *exec.Cmd
	client string
}

func startProcess(t *testing.T, dataDir string) *process {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr.json")
	cmd := exec.Command(imnodeBin, "--data-dir", dataDir, "--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--dev-app", "--addr-file", addrFile, "--log-level", "warn")
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
			var addrs struct{ Client string }
			if err := json.Unmarshal(data, &addrs); err != nil {
				t.Fatalf("addr file: %v", err)
			}
			p.client = addrs.Client
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
