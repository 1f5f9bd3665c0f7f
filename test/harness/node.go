package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
)

// Addrs are the addresses a node wrote to its --addr-file. Gossip and
// Transport are empty for an imnode without cluster support.
type Addrs struct {
	Client    string `json:"client"`
	Admin     string `json:"admin"`
	Gossip    string `json:"gossip"`
	Transport string `json:"transport"`
}

// Node is one imnode of a Cluster: a stable id and data directory, and the
// process currently running them (if any). Its methods are safe for
// concurrent use.
type Node struct {
	c       *Cluster
	id      string
	ordinal int
	dir     string // logs and addr files
	dataDir string

	mu    sync.Mutex
	proc  *process // nil when never started; kept (exited) after a kill
	addrs Addrs    // of the current or last process
	logs  []string // one log file per process, oldest first
	extra []string // flags appended from the next start (SetExtraArgs)
	admin *adminapi.Client
}

// process is one run of imnode.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process exited
	err      error         // cmd.Wait's result, set before done is closed
	expected bool          // the harness killed or stopped it
	log      string
}

// ID returns the node id (--node-id).
func (nd *Node) ID() string { return nd.id }

// Ordinal returns the node's index in the cluster.
func (nd *Node) Ordinal() int { return nd.ordinal }

// DataDir returns the node's --data-dir; it survives Kill and Restart.
func (nd *Node) DataDir() string { return nd.dataDir }

// Addrs returns the addresses of the current (or last) process.
func (nd *Node) Addrs() Addrs {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.addrs
}

// ClientAddr returns host:port of the client port.
func (nd *Node) ClientAddr() string { return nd.Addrs().Client }

// ClientURL returns the WebSocket URL of the client port, "ws://host:port/".
func (nd *Node) ClientURL() string { return "ws://" + nd.ClientAddr() + "/" }

// ServerURL returns the REST base URL of the client port, "http://host:port"
// (client.Config.Server).
func (nd *Node) ServerURL() string { return "http://" + nd.ClientAddr() }

// GossipAddr returns the memberlist address, the value other nodes --join.
func (nd *Node) GossipAddr() string { return nd.Addrs().Gossip }

// Admin returns a client for the node's admin port. After a Restart on new
// ports it returns a client for the new port.
func (nd *Node) Admin() *adminapi.Client {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.admin == nil || nd.admin.BaseURL() != "http://"+nd.addrs.Admin {
		nd.admin = adminapi.NewClient("http://"+nd.addrs.Admin, nd.c.opts.AdminToken, nil)
	}
	return nd.admin
}

// LogFiles returns the node's log files, one per process run, oldest first.
func (nd *Node) LogFiles() []string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return append([]string(nil), nd.logs...)
}

// PID returns the process id of the running process, or 0.
func (nd *Node) PID() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil || nd.proc.exited() {
		return 0
	}
	return nd.proc.cmd.Process.Pid
}

// Running reports whether the node's process is running.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil && !nd.proc.exited()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits for the process to end. No-op if not running.
func (nd *Node) Kill(t testing.TB) {
	t.Helper()
	nd.kill()
}

// expectExit returns the node's process (nil if never started) and marks
// its exit as expected, so it is not reported as a crash.
func (nd *Node) expectExit() *process {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil {
		nd.proc.expected = true
	}
	return nd.proc
}

func (nd *Node) kill() {
	p := nd.expectExit()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits for a clean exit (goaway to the node's
// clients, then shutdown). It fails the test if the node does not exit
// within Options.StopTimeout (it is then killed) or exits with an error.
func (nd *Node) Stop(t testing.TB) {
	t.Helper()
	p := nd.expectExit()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	timer := time.NewTimer(nd.c.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Fatalf("harness: %s did not stop within %v of SIGTERM; killed", nd.id, nd.c.opts.StopTimeout)
	}
	if p.err != nil {
		t.Errorf("harness: %s exited after SIGTERM with %v", nd.id, p.err)
	}
}

// Restart starts the node again (after Kill or Stop; a running node is
// stopped first) with the same id and data directory, on the same ports if
// they are still free and on new ones otherwise, joining the running nodes.
// It waits until the cluster converged with the node back in it.
func (nd *Node) Restart(t testing.TB) {
	t.Helper()
	if nd.Running() {
		nd.Stop(t)
	}
	if err := nd.start(nd.c.seeds(nd), true); err != nil {
		t.Fatal(err)
	}
	nd.c.WaitConverged(t)
}

// RestartNoWait is Restart of a node that is not running, without the wait
// for convergence: it returns once the process wrote its addr file, and the
// caller polls for what it needs (for example during a partition).
func (nd *Node) RestartNoWait(t testing.TB) {
	t.Helper()
	if nd.Running() {
		t.Fatalf("harness: %s is running", nd.id)
	}
	if err := nd.start(nd.c.seeds(nd), true); err != nil {
		t.Fatal(err)
	}
}

// start runs a new process; with samePorts it first tries the previous
// process's ports and falls back to port 0 if that run exits before
// writing its addr file.
func (nd *Node) start(join []string, samePorts bool) error {
	prev := nd.Addrs()
	if samePorts && prev.Client != "" {
		err := nd.launch(join, prev)
		if err == nil {
			return nil
		}
		if _, ok := errors.AsType[*exitError](err); !ok {
			return err
		}
	}
	return nd.launch(join, Addrs{})
}

// launch starts imnode bound to the given addresses (empty: port 0) and
// waits for its addr file.
func (nd *Node) launch(join []string, bind Addrs) error {
	if err := os.MkdirAll(nd.dataDir, 0o750); err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	nd.mu.Lock()
	run := len(nd.logs)
	nd.mu.Unlock()
	addrFile := filepath.Join(nd.dir, fmt.Sprintf("addr-%d.json", run))
	logPath := filepath.Join(nd.dir, fmt.Sprintf("%s-run%d.log", nd.id, run))
	logFile, err := os.Create(logPath) //nolint:gosec // a file in the test's temp dir
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	args := nd.args(join, bind, addrFile)
	cmd := exec.CommandContext(context.Background(), nd.c.bin, args...) //nolint:gosec // the binary this package built
	cmd.Stdout, cmd.Stderr = logFile, logFile
	_, _ = fmt.Fprintf(logFile, "# harness: %s %s\n", nd.c.bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("harness: start %s: %w", nd.id, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	nd.mu.Lock()
	nd.proc = p
	nd.logs = append(nd.logs, logPath)
	nd.mu.Unlock()

	addrs, err := nd.waitAddrFile(p, addrFile)
	if err != nil {
		return err
	}
	nd.mu.Lock()
	nd.addrs = addrs
	nd.mu.Unlock()
	return nil
}

// args is the imnode command line.
func (nd *Node) args(join []string, bind Addrs, addrFile string) []string {
	o := nd.c.opts
	or0 := func(a string) string {
		if a == "" {
			return "127.0.0.1:0"
		}
		return a
	}
	args := []string{
		"--node-id", nd.id,
		"--data-dir", nd.dataDir,
		"--client-addr", or0(bind.Client),
		"--admin-addr", or0(bind.Admin),
		"--peer-addr", or0(bind.Gossip),
		"--transport-addr", or0(bind.Transport),
		"--cluster-profile", "local",
		"--addr-file", addrFile,
		"--log-level", o.LogLevel,
		"--shards", strconv.Itoa(o.Shards),
		"--replication-factor", strconv.Itoa(o.ReplicationFactor),
		"--write-quorum", strconv.Itoa(o.WriteQuorum),
		"--shutdown-grace", "1s",
	}
	if len(join) > 0 {
		args = append(args, "--join", joinAddrs(join))
	} else {
		// The first node forms the cluster; imnode ignores --bootstrap
		// once the data directory belongs to one.
		args = append(args, "--bootstrap")
	}
	if o.FaultInjection {
		args = append(args, "--fault-injection")
	}
	if o.AdminToken != "" {
		args = append(args, "--admin-token", o.AdminToken)
	}
	if o.Credentials != nil {
		args = append(args, o.Credentials(nd.id)...)
	} else {
		args = append(args, "--insecure", "--dev-app")
	}
	args = append(args, o.ExtraArgs...)
	nd.mu.Lock()
	args = append(args, nd.extra...)
	nd.mu.Unlock()
	return args
}

// waitAddrFile polls for the addr file until the process exits (an
// *exitError) or the ready timeout passes.
func (nd *Node) waitAddrFile(p *process, path string) (Addrs, error) {
	deadline := time.Now().Add(nd.c.opts.ReadyTimeout)
	for {
		if data, err := os.ReadFile(path); err == nil { //nolint:gosec // a file in the test's temp dir
			var a Addrs
			if err := json.Unmarshal(data, &a); err != nil {
				return Addrs{}, fmt.Errorf("harness: %s addr file %s: %w", nd.id, path, err)
			}
			if a.Client == "" || a.Admin == "" {
				return Addrs{}, fmt.Errorf("harness: %s addr file lacks client or admin: %s", nd.id, data)
			}
			return a, nil
		}
		if p.exited() {
			return Addrs{}, &exitError{fmt.Errorf("harness: %s exited before writing its addr file: %v\n%s",
				nd.id, p.err, tailFile(p.log, 40))}
		}
		if time.Now().After(deadline) {
			return Addrs{}, fmt.Errorf("harness: %s wrote no addr file within %v", nd.id, nd.c.opts.ReadyTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// checkExited returns an *exitError if the node's process ended without
// the harness asking it to.
func (nd *Node) checkExited() error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil || !p.exited() || p.expected {
		return nil
	}
	return &exitError{fmt.Errorf("%s exited unexpectedly: %v (log %s):\n%s", nd.id, p.err, p.log, tailFile(p.log, 40))}
}

// tailFile returns the last n lines of the file at path (all if n < 0).
func tailFile(path string, n int) string {
	f, err := os.Open(path) //nolint:gosec // a file in the test's temp dir
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if n >= 0 && len(lines) > 2*n+1024 {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ErrStillRunning is returned by TryStart when the process had not exited
// by the timeout (it is killed).
var ErrStillRunning = errors.New("harness: still running at the timeout")

// TryStart runs imnode once as node id on dataDir, a start that should be
// refused: with join it joins the running nodes, without it it gets
// --bootstrap (as a first node does); extra flags are appended and win. It
// waits up to timeout for the process to exit and returns its exit error
// (nil for exit status 0, ErrStillRunning if it was still running and was
// killed) and the end of its log. The process never outlives the call.
func (c *Cluster) TryStart(t testing.TB, id, dataDir string, join bool, extra []string, timeout time.Duration) (string, error) {
	t.Helper()
	dir := t.TempDir()
	nd := &Node{c: c, id: id, dir: dir, dataDir: dataDir}
	var seeds []string
	if join {
		seeds = c.seeds(nd)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, id+"-trystart.log")
	logFile, err := os.Create(logPath) //nolint:gosec // a file in the test's temp dir
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }()
	args := append(nd.args(seeds, Addrs{}, filepath.Join(dir, "addr.json")), extra...)
	cmd := exec.CommandContext(context.Background(), c.bin, args...) //nolint:gosec // the binary this package built
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var exit error
	select {
	case exit = <-done:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done //nolint:errcheck // killed: its exit status says only that
		exit = ErrStillRunning
	}
	return tailFile(logPath, 20), exit
}

// SetExtraArgs sets flags appended to this node's command line from its
// next start on (after the cluster's ExtraArgs; they win). No arguments
// clears them.
func (nd *Node) SetExtraArgs(args ...string) {
	nd.mu.Lock()
	nd.extra = args
	nd.mu.Unlock()
}

// WaitExit waits up to timeout for the node's process to exit on its own
// (an injected fault that stops it) and returns its exit error and the end
// of its log; the exit counts as expected. A process still running at the
// timeout is killed and ErrStillRunning returned.
func (nd *Node) WaitExit(t testing.TB, timeout time.Duration) (string, error) {
	t.Helper()
	p := nd.expectExit()
	if p == nil {
		t.Fatalf("harness: %s was never started", nd.id)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return tailFile(p.log, 20), p.err
	case <-timer.C:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return tailFile(p.log, 20), ErrStillRunning
	}
}
