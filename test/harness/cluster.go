package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
)

// Defaults of Options.
const (
	// DefaultShards keeps per-shard work small in tests; production uses 256.
	DefaultShards = 16
	// DefaultReplicationFactor and DefaultWriteQuorum are the production
	// defaults (docs/replication.md).
	DefaultReplicationFactor = 3
	DefaultWriteQuorum       = 2
	// DefaultReadyTimeout bounds how long Start, Restart and AddNode wait
	// for readiness and convergence: long enough for a few gossip rounds,
	// failure detection and shard catch-up on a loaded 2-core machine.
	DefaultReadyTimeout = 45 * time.Second
	// DefaultStopTimeout bounds a SIGTERM shutdown: imnode gives its
	// shutdown 30 s, plus the goaway grace.
	DefaultStopTimeout = 40 * time.Second
	// DefaultLogTail is how many lines of each log are dumped on failure.
	DefaultLogTail = 300
	// pollInterval is how often the harness polls files and admin endpoints.
	pollInterval = 25 * time.Millisecond
)

// Options configure a Cluster. The zero value means the defaults given on
// each field.
type Options struct {
	// Shards is --shards. Zero means DefaultShards (16).
	Shards int
	// ReplicationFactor is --replication-factor. Zero means 3.
	ReplicationFactor int
	// WriteQuorum is --write-quorum. Zero means 2.
	WriteQuorum int
	// FaultInjection passes --fault-injection (POST /admin/v1/faults).
	FaultInjection bool
	// ExtraArgs are appended to every node's command line; a flag given
	// here wins over the harness's own value of it.
	ExtraArgs []string
	// LogLevel is --log-level. Empty means "info".
	LogLevel string
	// AdminToken is --admin-token, also used by the admin clients. Empty
	// means none.
	AdminToken string
	// Credentials, when set, returns the extra flags of node id that give
	// it cluster credentials (--peer-ca-file, --peer-cert-file,
	// --peer-key-file, --gossip-keyring-file, --apps-file, ...); such nodes
	// start without --insecure and without --dev-app (which needs it), so
	// the flags must name an apps file. Nil starts every node --insecure
	// with the development app.
	Credentials func(nodeID string) []string
	// NodeIDPrefix prefixes the node ids (prefix + ordinal). Empty means
	// "imnode-".
	NodeIDPrefix string
	// ReadyTimeout bounds each wait for readiness and convergence. Zero
	// means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopTimeout bounds a SIGTERM stop before the harness kills the node.
	// Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// LogTail is the number of lines per log written to the test log when
	// the test failed. Zero means DefaultLogTail; negative means all.
	LogTail int
	// SequentialStart makes Start launch the joining nodes one at a time,
	// each once the previous one is ready (a StatefulSet's OrderedReady).
	// By default they are launched together (Parallel pod management, or
	// a whole cluster restarting at once).
	SequentialStart bool
}

func (o Options) withDefaults() Options {
	if o.Shards == 0 {
		o.Shards = DefaultShards
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = DefaultReplicationFactor
	}
	if o.WriteQuorum == 0 {
		o.WriteQuorum = DefaultWriteQuorum
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.NodeIDPrefix == "" {
		o.NodeIDPrefix = "imnode-"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.LogTail == 0 {
		o.LogTail = DefaultLogTail
	}
	return o
}

// Cluster is a set of imnode processes started by Start. Its methods are
// safe for concurrent use; the processes end in the t.Cleanup of the test
// that started it.
type Cluster struct {
	opts Options
	bin  string
	dir  string // the test's temp dir: node directories live below it

	mu    sync.Mutex
	nodes []*Node // every node ever added, by ordinal
}

// Start builds imnode (once per test binary) and starts n nodes on
// 127.0.0.1 with port 0 everywhere: the first without --join, the others
// joining the first's gossip address, all at once once the first is ready
// (one at a time with Options.SequentialStart). It returns once every node's /readyz
// is 200 and every node's cluster view lists all n alive and active, and
// fails the test otherwise. The processes are killed in t.Cleanup, after
// which the logs are dumped if the test failed.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("harness: Start with %d nodes", n)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{opts: opts.withDefaults(), bin: bin, dir: t.TempDir()}
	t.Cleanup(func() { c.cleanup(t) })

	first := c.newNode()
	if err := first.start(nil, false); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReady(first); err != nil {
		t.Fatal(err)
	}
	seed := first.GossipAddr()
	if n > 1 && seed == "" {
		t.Fatalf("harness: %s wrote no gossip address to its addr file (does imnode support --peer-addr?)", first.ID())
	}
	rest := make([]*Node, 0, n-1)
	for range n - 1 {
		rest = append(rest, c.newNode())
	}
	if c.opts.SequentialStart {
		for _, nd := range rest {
			if err := nd.start([]string{seed}, false); err != nil {
				t.Fatal(err)
			}
			if err := c.waitReady(nd); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		errs := make([]error, len(rest))
		var wg sync.WaitGroup
		for i, nd := range rest {
			wg.Go(func() { errs[i] = nd.start([]string{seed}, false) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitConverged(t)
	return c
}

// newNode appends a node with the next ordinal and a fresh data directory.
func (c *Cluster) newNode() *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.nodes)
	id := fmt.Sprintf("%s%d", c.opts.NodeIDPrefix, i)
	dir := filepath.Join(c.dir, id)
	nd := &Node{c: c, id: id, ordinal: i, dir: dir, dataDir: filepath.Join(dir, "data")}
	c.nodes = append(c.nodes, nd)
	return nd
}

// Options returns the options the cluster runs with, defaults filled in.
func (c *Cluster) Options() Options { return c.opts }

// Nodes returns every node ever started in the cluster, by ordinal,
// including killed and stopped ones.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Node returns the node with ordinal i.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// NodeByID returns the node with the given id, or nil.
func (c *Cluster) NodeByID(id string) *Node {
	for _, nd := range c.Nodes() {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// Running returns the nodes whose process is running, by ordinal.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, nd := range c.Nodes() {
		if nd.Running() {
			out = append(out, nd)
		}
	}
	return out
}

// ClientURLs returns the WebSocket URLs of the running nodes, starting
// with first's (if running) and then the others in ordinal order: the URL
// list for a client that should connect to first and fail over to the rest.
// first may be nil.
func (c *Cluster) ClientURLs(first *Node) []string {
	var head, tail []string
	for _, nd := range c.Running() {
		if nd == first {
			head = append(head, nd.ClientURL())
		} else {
			tail = append(tail, nd.ClientURL())
		}
	}
	return append(head, tail...)
}

// AddNode starts a new node (next ordinal, fresh data directory) that
// joins the running nodes, and waits until the cluster converged with it.
func (c *Cluster) AddNode(t testing.TB) *Node {
	t.Helper()
	nd := c.newNode()
	if err := nd.start(c.seeds(nd), false); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(t)
	return nd
}

// seeds returns the gossip addresses of the running nodes other than self.
func (c *Cluster) seeds(self *Node) []string {
	var out []string
	for _, nd := range c.Running() {
		if nd != self {
			if a := nd.GossipAddr(); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

// WaitConverged waits until every running node answers /readyz with 200
// and its GET /admin/v1/cluster lists exactly the running nodes as alive,
// each in state active. It fails the test after Options.ReadyTimeout.
func (c *Cluster) WaitConverged(t testing.TB) {
	t.Helper()
	if err := c.waitFor(c.opts.ReadyTimeout, c.converged); err != nil {
		t.Fatalf("harness: cluster did not converge within %v: %v", c.opts.ReadyTimeout, err)
	}
}

// converged returns nil when every running node is ready and sees exactly
// the running nodes alive and active.
func (c *Cluster) converged(ctx context.Context) error {
	running := c.Running()
	if len(running) == 0 {
		return errors.New("no node is running")
	}
	want := make([]string, 0, len(running))
	for _, nd := range running {
		want = append(want, nd.id)
	}
	for _, nd := range running {
		if err := nd.checkExited(); err != nil {
			return err
		}
		adm := nd.Admin()
		if err := adm.Readyz(ctx); err != nil {
			return fmt.Errorf("%s /readyz: %w", nd.id, err)
		}
		cs, err := adm.Cluster(ctx)
		if err != nil {
			return fmt.Errorf("%s cluster view: %w", nd.id, err)
		}
		var alive []string
		for _, m := range cs.Members {
			if m.Alive {
				alive = append(alive, m.ID)
				if m.State != adminapi.StateActive {
					return fmt.Errorf("%s sees %s %s", nd.id, m.ID, m.State)
				}
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, sortedCopy(want)) {
			return fmt.Errorf("%s sees alive %v, want %v", nd.id, alive, sortedCopy(want))
		}
	}
	return nil
}

// waitReady waits until nd answers /readyz with 200.
func (c *Cluster) waitReady(nd *Node) error {
	err := c.waitFor(c.opts.ReadyTimeout, func(ctx context.Context) error {
		if err := nd.checkExited(); err != nil {
			return err
		}
		return nd.Admin().Readyz(ctx)
	})
	if err != nil {
		return fmt.Errorf("harness: %s not ready within %v: %w", nd.id, c.opts.ReadyTimeout, err)
	}
	return nil
}

// exitError marks a condition that no amount of waiting fixes.
type exitError struct{ err error }

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// waitFor polls f until it returns nil, returns an *exitError (which ends
// the wait at once) or the timeout passes; it returns f's last error.
func (c *Cluster) waitFor(timeout time.Duration, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if _, ok := errors.AsType[*exitError](err); ok || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// Partition makes the nodes in a and those in b drop all peer traffic
// between the two groups (POST /admin/v1/faults on every node of both
// groups). The cluster must run with Options.FaultInjection.
func (c *Cluster) Partition(t testing.TB, a, b []*Node) {
	t.Helper()
	ids := func(list []*Node) []string {
		out := make([]string, 0, len(list))
		for _, nd := range list {
			out = append(out, nd.id)
		}
		return out
	}
	for _, side := range []struct{ from, to []*Node }{{a, b}, {b, a}} {
		for _, nd := range side.from {
			if err := nd.Admin().Faults(t.Context(), adminapi.FaultRequest{Partition: ids(side.to)}); err != nil {
				t.Fatalf("harness: partition %s from %v: %v", nd.id, ids(side.to), err)
			}
		}
	}
}

// Heal removes every partition on every running node.
func (c *Cluster) Heal(t testing.TB) {
	t.Helper()
	for _, nd := range c.Running() {
		if err := nd.Admin().Faults(t.Context(), adminapi.FaultRequest{Heal: true}); err != nil {
			t.Fatalf("harness: heal %s: %v", nd.id, err)
		}
	}
}

// cleanup kills every process, reports nodes that died on their own and
// dumps the logs of a failed test.
func (c *Cluster) cleanup(t testing.TB) {
	for _, nd := range c.Nodes() {
		if err := nd.checkExited(); err != nil {
			t.Errorf("harness: %v", err)
		}
		nd.kill()
	}
	if !t.Failed() {
		return
	}
	for _, nd := range c.Nodes() {
		for _, path := range nd.LogFiles() {
			t.Logf("harness: ---- %s (last %d lines) ----\n%s", path, c.opts.LogTail, tailFile(path, c.opts.LogTail))
		}
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// joinAddrs formats a --join value.
func joinAddrs(addrs []string) string { return strings.Join(addrs, ",") }

// CheckFor calls f every interval until it returns nil, and fails the test
// with f's last error once timeout passed: the poll-with-a-deadline that
// replaces sleeps in cluster tests.
func CheckFor(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}
