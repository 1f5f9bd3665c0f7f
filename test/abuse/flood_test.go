package abuse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

// Sizes of BenchmarkAbuseQueryFlood.
const (
	floodConvs     = 20000 // conversations of the app
	floodCreators  = 40    // sockets creating them
	floodSockets   = 40    // sockets flooding node A with app-wide queries
	floodWindow    = 20 * time.Second
	floodWarmUp    = 15 * time.Second
	floodLegit     = 4 // legitimate clients, on node B
	floodOwnConvs  = 5 // each legitimate client's conversations
	floodQueryPage = 100
	// floodLegitPeriod paces each legitimate client: one round (a send
	// and a query) every 125 ms, 8 queries/s, below the default
	// queriesPerSecondPerSession (20), like a real client.
	floodLegitPeriod = 125 * time.Millisecond
)

// BenchmarkAbuseQueryFlood: three imnode processes, one app of 20,000
// conversations. Four legitimate clients on node B each send a message to
// one of their own conversations and run the default query, a round every
// floodLegitPeriod (640 rounds per phase, so a p99 is not one stall), for
// floodWindow in each of three phases: idle; while
// 40 sockets on node A send app-wide queries the order index serves (where
// level=1, sort -lm, limit 100) as fast as they are answered; and while
// they send app-wide queries no index serves (sort by name: a scan,
// refused at the scan budget). The flooders run in a child process (this
// test binary, see floodChild).
//
// It runs the three phases twice. "shared": every process may run on every
// core, so what node A and the flooders spend is taken from node B and the
// legitimate clients. "pinned": separate machines emulated on a two-core
// machine with CPU affinity (sched_setaffinity on every thread): node A
// and the flooder process on CPU 0, nodes B and C and this process (the
// legitimate clients) on CPU 1. Processes outside the benchmark are not
// pinned. It reports the legitimate clients' p99 per operation in each
// phase, the ratios to the idle phase of the same mode, and what each
// flood got answered or refused. Run it once (about three minutes):
//
//	go test ./test/abuse/ -run '^$' -bench BenchmarkAbuseQueryFlood -benchtime 1x
func BenchmarkAbuseQueryFlood(b *testing.B) {
	c := harness.Start(b, 3, harness.Options{})
	nodes := c.Running()
	nodeA, nodeB := nodes[0], nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	createConvs(ctx, b, apps.Dev(), nodes)
	legit := make([]legitClient, floodLegit)
	for l := range legit {
		legit[l].cl = login(ctx, b, apps.Dev(), nodeB, fmt.Sprint("legit", l))
		for i := range floodOwnConvs {
			conv, err := legit[l].cl.CreateConversation(ctx, client.CreateOptions{Members: []string{fmt.Sprint("friend", i)}, Unique: false,
				Attributes: map[string]any{"level": 2}})
			if err != nil {
				b.Fatal(err)
			}
			legit[l].own = append(legit[l].own, conv)
		}
	}
	both, cpu0, cpu1 := []int{0, 1}, []int{0}, []int{1}
	b.Cleanup(func() { _ = pin(0, both) })

	// Warm up: creating 20,000 conversations leaves the nodes compacting
	// and building order indexes for a while; measuring idle then would
	// flatter every ratio.
	legitRounds(ctx, b, legit, floodWarmUp)

	for range b.N {
		var summary []string
		for _, mode := range []string{"shared", "pinned"} {
			floodCPUs := both
			placement := map[int][]int{0: both, nodes[0].PID(): both, nodes[1].PID(): both, nodes[2].PID(): both}
			if mode == "pinned" {
				floodCPUs = cpu0
				placement = map[int][]int{0: cpu1, nodes[0].PID(): cpu0, nodes[1].PID(): cpu1, nodes[2].PID(): cpu1}
			}
			for pid, cpus := range placement {
				if err := pin(pid, cpus); err != nil {
					b.Fatal(err)
				}
			}
			idleSend, idleQuery := legitRounds(ctx, b, legit, floodWindow)
			b.ReportMetric(ms(idleSend.p99()), mode+"-idle-send-p99-ms")
			b.ReportMetric(ms(idleQuery.p99()), mode+"-idle-query-p99-ms")
			summary = append(summary, fmt.Sprintf("%s idle: send p99 %v, query p99 %v (%d rounds)",
				mode, idleSend.p99(), idleQuery.p99(), idleSend.n()))
			for _, kind := range []string{"indexed", "scan"} {
				stop := startFlood(ctx, b, nodeA, kind == "scan", floodCPUs)
				send, query := legitRounds(ctx, b, legit, floodWindow)
				answered, refused := stop()
				sendRatio, queryRatio := ms(send.p99())/ms(idleSend.p99()), ms(query.p99())/ms(idleQuery.p99())
				b.ReportMetric(ms(send.p99()), mode+"-"+kind+"-send-p99-ms")
				b.ReportMetric(ms(query.p99()), mode+"-"+kind+"-query-p99-ms")
				b.ReportMetric(sendRatio, mode+"-"+kind+"-send-p99-ratio")
				b.ReportMetric(queryRatio, mode+"-"+kind+"-query-p99-ratio")
				summary = append(summary, fmt.Sprintf("%s %s flood on %s: send p99 %v (%.1fx idle), query p99 %v (%.1fx idle), %d rounds; flood answered %d, refused %d",
					mode, kind, nodeA.ID(), send.p99(), sendRatio, query.p99(), queryRatio, send.n(), answered, refused))
			}
		}
		b.Logf("%d legitimate clients on %s, %v per phase:\n%s", floodLegit, nodeB.ID(), floodWindow, strings.Join(summary, "\n"))
	}
}

// pin sets the CPU affinity of every thread of process pid (0: this
// process) to cpus. Threads the process starts later inherit it from the
// thread that starts them; a second pass catches those started during the
// first.
func pin(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	for range 2 {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("pin %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of %d to CPUs %v: %w", tid, pid, cpus, err)
			}
		}
	}
	return nil
}

// floodChildEnv, set in its environment, makes the test binary the
// flooder process of BenchmarkAbuseQueryFlood (TestMain runs floodChild).
const floodChildEnv = "IMCLUSTER_ABUSE_FLOODER"

// floodSpec is what the flooder process is told, as JSON in floodChildEnv.
type floodSpec struct {
	ClientURL, ServerURL string
	Scan                 bool
}

// startFlood starts the flooder process against node on cpus; it returns
// once the flooders are logged in and flooding. stop ends the flood and
// returns how many queries were answered and refused. The cleanup kills
// the process if the benchmark fails before stop.
func startFlood(ctx context.Context, b *testing.B, node *harness.Node, scan bool, cpus []int) (stop func() (answered, refused int64)) {
	b.Helper()
	spec, err := json.Marshal(floodSpec{ClientURL: node.ClientURL(), ServerURL: node.ServerURL(), Scan: scan})
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$") //nolint:gosec // this test binary
	cmd.Env = append(os.Environ(), floodChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := false
	b.Cleanup(func() {
		if !done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("flooder process: %q, want ready", lines.Text())
	}
	if err := pin(cmd.Process.Pid, cpus); err != nil {
		b.Fatal(err)
	}
	return func() (answered, refused int64) {
		_ = stdin.Close()
		if !lines.Scan() {
			b.Fatal("flooder process ended without its counts")
		}
		if _, err := fmt.Sscan(lines.Text(), &answered, &refused); err != nil {
			b.Fatalf("flooder process counts %q: %v", lines.Text(), err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("flooder process: %v", err)
		}
		done = true
		return answered, refused
	}
}

// floodChild is the flooder process: it logs floodSockets clients in to the
// node of spec, prints "ready", floods until its standard input closes,
// then prints the counts of answered and refused queries and returns the
// exit code.
func floodChild(specJSON string) int {
	var spec floodSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "flooder:", err)
		return 2
	}
	ctx := context.Background()
	var flooders []*client.IMClient
	var conns []*client.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range floodSockets {
		cl, conn, err := connect(ctx, apps.Dev(), spec.ClientURL, spec.ServerURL, fmt.Sprint("flooder", i))
		if conn != nil {
			conns = append(conns, conn)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "flooder:", err)
			return 1
		}
		flooders = append(flooders, cl)
	}
	stats, stop := flood(ctx, flooders, spec.Scan)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
	fmt.Println(stats.ok.Load(), stats.refused.Load())
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// login connects id of app to node home only.
func login(ctx context.Context, tb testing.TB, app apps.App, home *harness.Node, id string) *client.IMClient {
	tb.Helper()
	cl, conn, err := connect(ctx, app, home.ClientURL(), home.ServerURL(), id)
	if conn != nil {
		tb.Cleanup(func() { _ = conn.Close() })
	}
	if err != nil {
		tb.Fatalf("%s on %s: %v", id, home.ID(), err)
	}
	return cl
}

// connect dials the node at clientURL (only that node) and logs id of app
// in. It returns the socket, to be closed, whenever the dial succeeded.
func connect(ctx context.Context, app apps.App, clientURL, serverURL, id string) (*client.IMClient, *client.Conn, error) {
	cfg := client.DefaultConfig(app.ID, clientURL)
	cfg.AppKey = app.Key
	cfg.Server = serverURL
	cfg.Logger = slog.New(slog.DiscardHandler)
	conn, err := client.Dial(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	cl, err := conn.Login(ctx, id, client.LoginOptions{})
	if err != nil {
		return nil, conn, fmt.Errorf("login: %w", err)
	}
	return cl, conn, nil
}

// createConvs creates floodConvs conversations of app, named
// "conversation 00000"... with level 0 or 1, from floodCreators sockets
// spread over nodes: creator i creates those whose number is i modulo
// floodCreators. It returns their ids by number.
func createConvs(ctx context.Context, tb testing.TB, app apps.App, nodes []*harness.Node) []string {
	tb.Helper()
	ids := make([]string, floodConvs)
	errs := make(chan error, floodCreators)
	var wg sync.WaitGroup
	for i := range floodCreators {
		cl := login(ctx, tb, app, nodes[i%len(nodes)], fmt.Sprint("creator", i))
		wg.Go(func() {
			for n := i; n < floodConvs; n += floodCreators {
				conv, err := cl.CreateConversation(ctx, client.CreateOptions{Members: []string{fmt.Sprint("member", n)}, Unique: false,
					Name: fmt.Sprintf("conversation %05d", n), Attributes: map[string]any{"level": n % 2}})
				if err != nil {
					errs <- fmt.Errorf("create conversation %d: %w", n, err)
					return
				}
				ids[n] = conv.ID()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	return ids
}

// floodStats counts the flood's answers: results, and errors (the scan
// budget, the per-app query limit).
type floodStats struct{ ok, refused atomic.Int64 }

// flood starts the query flood, of queries sorted by name (no index) if
// scan, else by -lm; stop ends it and waits for its goroutines.
func flood(ctx context.Context, flooders []*client.IMClient, scan bool) (*floodStats, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stats := &floodStats{}
	var wg sync.WaitGroup
	for _, cl := range flooders {
		wg.Go(func() {
			for ctx.Err() == nil {
				q := cl.Query().EqualTo("level", 1).Limit(floodQueryPage).Descending("lm")
				if scan {
					q = cl.Query().EqualTo("level", 1).Limit(floodQueryPage).Ascending("name")
				}
				if _, err := q.Find(ctx); err == nil {
					stats.ok.Add(1)
				} else if !errors.Is(err, context.Canceled) {
					stats.refused.Add(1)
				}
			}
		})
	}
	return stats, func() { cancel(); wg.Wait() }
}

// legitClient is a legitimate client and its own conversations.
type legitClient struct {
	cl  *client.IMClient
	own []*client.Conversation
}

// legitRounds runs legitLoop for every client at once, for d, and returns
// the latencies of all of them.
func legitRounds(ctx context.Context, tb testing.TB, clients []legitClient, d time.Duration) (send, query *latencies) {
	tb.Helper()
	send, query = &latencies{}, &latencies{}
	var mu sync.Mutex // guards send, query and first
	var first error
	var wg sync.WaitGroup
	for _, lc := range clients {
		wg.Go(func() {
			s, q, err := legitLoop(ctx, lc, d)
			mu.Lock()
			defer mu.Unlock()
			send.d, query.d = append(send.d, s.d...), append(query.d, q.d...)
			if first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
	return send, query
}

// legitLoop sends a message to one of lc's conversations and runs the
// default query, in turn, one round every floodLegitPeriod (or as soon as
// the previous one ends if it took longer), for d, and returns the
// latencies of each; it stops at the first failure.
func legitLoop(ctx context.Context, lc legitClient, d time.Duration) (send, query *latencies, err error) {
	send, query = &latencies{}, &latencies{}
	end := time.Now().Add(d)
	tick := time.NewTicker(floodLegitPeriod)
	defer tick.Stop()
	for i := 0; time.Now().Before(end); i++ {
		if i > 0 {
			<-tick.C
		}
		start := time.Now()
		if _, err := lc.own[i%len(lc.own)].Send(ctx, client.NewText(fmt.Sprint("hello ", i))); err != nil {
			return send, query, fmt.Errorf("legitimate send %d: %w", i, err)
		}
		send.add(time.Since(start))
		start = time.Now()
		list, err := lc.cl.Query().Find(ctx)
		if err != nil {
			return send, query, fmt.Errorf("legitimate query %d: %w", i, err)
		}
		query.add(time.Since(start))
		if len(list) != len(lc.own) {
			return send, query, fmt.Errorf("legitimate query %d: %d conversations, want its %d", i, len(list), len(lc.own))
		}
	}
	return send, query, nil
}

// latencies collects the latencies of one operation (a few thousand at
// most).
type latencies struct{ d []time.Duration }

func (l *latencies) add(d time.Duration) { l.d = append(l.d, d) }
func (l *latencies) n() int              { return len(l.d) }

// p99 returns the 99th percentile (nearest rank).
func (l *latencies) p99() time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}
