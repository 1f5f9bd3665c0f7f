package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

const devApp = apps.DevAppID

// EnvDuration and EnvSeed are the environment forms of -chaos.duration and
// -chaos.seed (the flags win).
const (
	EnvDuration = "CHAOS_DURATION"
	EnvSeed     = "CHAOS_SEED"
)

var (
	flagDuration = flag.Duration("chaos.duration", 0,
		"minimum length of TestChaos's fault phase; after the fixed kill, partition, join and drain it injects random faults "+
			"until this much time passed (zero: just the fixed ones, about a minute; env "+EnvDuration+")")
	flagSeed = flag.Uint64("chaos.seed", 0, "seed of the fault schedule and the senders (zero: from the clock; env "+EnvSeed+")")
)

// Cluster shape of the chaos runs (issue 4): R=3, W=2, a small shard count
// so that per-shard work stays cheap but every node coordinates several.
const (
	chaosNodes  = 3
	chaosShards = 24
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func runDuration(t *testing.T) time.Duration {
	if *flagDuration > 0 {
		return *flagDuration
	}
	if v := os.Getenv(EnvDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", EnvDuration, err)
		}
		return d
	}
	return 0
}

func runSeed(t *testing.T) uint64 {
	seed := *flagSeed
	if v := os.Getenv(EnvSeed); seed == 0 && v != "" {
		if _, err := fmt.Sscan(v, &seed); err != nil {
			t.Fatalf("%s: %v", EnvSeed, err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d (rerun with -chaos.seed=%d)", seed, seed)
	return seed
}

func startCluster(t *testing.T, n int) *harness.Cluster {
	c := harness.Start(t, n, harness.Options{
		Shards:         chaosShards,
		FaultInjection: true,
		ReadyTimeout:   readyTimeout,
		// All nodes share one machine: the local failure-detection timings
		// notice a killed node within a couple of seconds.
		ExtraArgs: []string{"--cluster-profile", "local"},
	})
	t.Cleanup(func() { keepLogs(t, c) })
	t.Cleanup(func() { checkCrashes(t, c) })
	return c
}

// crashMarkers start the lines a Go process writes when it dies of a panic
// or a fatal runtime error.
var crashMarkers = []string{"panic: ", "fatal error: "}

// checkCrashes fails the test if any node process of the run crashed. The
// harness relaunches a node whose restart exits before it is listening
// (on new ports), so a crash at startup would otherwise go unnoticed.
func checkCrashes(t *testing.T, c *harness.Cluster) {
	for _, nd := range c.Nodes() {
		for _, path := range nd.LogFiles() {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("reading %s: %v", path, err)
				continue
			}
			lines := strings.Split(string(data), "\n")
			for i, line := range lines {
				if diskFullDeath(lines, line) {
					break // the injected full disk stopped it: the fault, not a crash
				}
				if slices.ContainsFunc(crashMarkers, func(m string) bool { return strings.HasPrefix(line, m) }) {
					end := min(i+crashExcerpt, len(lines))
					t.Errorf("%s crashed (%s):\n%s", nd.ID(), filepath.Base(path), strings.Join(lines[i:end], "\n"))
					break
				}
			}
		}
	}
}

// diskFullDeath reports whether line is the panic Pebble raises on ENOSPC
// (it panics with the raw error when it cannot rotate its WAL) in the log
// of a process started with an injected ENOSPC (--fault-disk-full-after:
// every write fails at once, faster than any free-space check). A node whose
// disk is only low (the disk-low fault) gets no such excuse: it must not
// crash.
func diskFullDeath(lines []string, line string) bool {
	return len(lines) > 0 && strings.Contains(lines[0], "--fault-disk-full-after") &&
		strings.HasPrefix(line, "panic: ") && (strings.Contains(line, "Errno(28)") || strings.Contains(line, "no space left on device"))
}

// crashExcerpt is how many lines of a crash (message and the first frames
// of the stack) the test log shows.
const crashExcerpt = 30

// EnvArtifacts names the directory a failed run copies every node log to
// (default: the system temp directory). The harness only prints the tails,
// and a chaos failure usually needs the whole story.
const EnvArtifacts = "CHAOS_ARTIFACTS"

// EnvKeepLogs, when not empty, keeps the node logs of passing runs too (to
// study a stall that did not fail the run).
const EnvKeepLogs = "CHAOS_KEEP_LOGS"

// keepLogs copies the node logs of a failed test out of its temp directory.
// It runs in t.Cleanup before the harness's own cleanup kills the nodes.
func keepLogs(t *testing.T, c *harness.Cluster) {
	if !t.Failed() && os.Getenv(EnvKeepLogs) == "" {
		return
	}
	base := os.Getenv(EnvArtifacts)
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "imcluster-"+t.Name()+"-")
	if err != nil {
		t.Logf("keeping logs: %v", err)
		return
	}
	for _, nd := range c.Nodes() {
		for _, path := range nd.LogFiles() {
			data, err := os.ReadFile(path)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o600)
			}
			if err != nil {
				t.Logf("keeping %s: %v", path, err)
			}
		}
	}
	t.Logf("node logs kept in %s", dir)
}

// TestChaos runs senders across several conversations and nodes while it
// SIGKILLs and restarts a node, partitions one from the others and heals,
// adds a node and drains another; with -chaos.duration it then goes on with
// random faults (wiped disks included). Once the cluster settles it checks
// every acknowledged message against every replica.
func TestChaos(t *testing.T) {
	dur, seed := runDuration(t), runSeed(t)
	c := startCluster(t, chaosNodes)
	ledger := NewLedger()
	cfg := LoadConfig{AppID: devApp, Seed: seed, Logger: testLogger(t)}
	load, err := StartLoad(t.Context(), cfg, c.ClientURLs(nil), ledger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(load.Stop)
	r := newRunner(t, c, load, ledger, seed)
	start := time.Now()
	t.Cleanup(r.salvage(seed, start, cfg.withDefaults().Senders))

	hold(quietGap)
	r.kill(r.pick(c.Running()))
	hold(quietGap)
	r.partition(r.pick(c.Running()))
	hold(quietGap)
	joined := r.join()
	hold(quietGap)
	r.drain(r.pick(slices.DeleteFunc(c.Running(), func(nd *harness.Node) bool { return nd == joined })))
	hold(quietGap)
	r.formation()
	for time.Since(start) < dur {
		hold(quietGap)
		r.random()
	}
	hold(quietGap)
	r.waitProgress(2*cfg.withDefaults().Senders, readyTimeout)
	load.Stop()

	sum := r.finish(t.Context(), seed, start, cfg.withDefaults().Senders, settleTimeout)
	if sum.Acked == 0 {
		t.Error("no message was acknowledged")
	}
}

// finish builds the summary of a run whose load stopped, settles and
// verifies, logs the summary and fails the test on violations.
func (r *runner) finish(ctx context.Context, seed uint64, start time.Time, senders int, settle time.Duration) Summary {
	r.finished = true
	t, c := r.t, r.c
	acks := r.ledger.Acks()
	sum := Summary{
		Seed: seed, Duration: time.Since(start), NodesStart: chaosNodes, NodesEnd: len(c.Running()),
		Senders: senders, Conversations: len(r.load.Conversations()),
		Faults: r.faults, Errors: r.ledger.Errors(), Events: r.ledger.Events(), AcksVia: map[string]int{},
		ErrorGroups: r.ledger.ErrorGroups(), Refused: r.refused, Accepted: r.accepted, DiskFull: r.diskFullOutcomes,
	}
	for _, a := range acks {
		sum.AcksVia[a.Via]++
	}
	sum.Attempts, sum.Acked, sum.Abandoned = r.ledger.Counts()
	sum.MaxAckGap, sum.MaxAckGapFrom = MaxAckGap(acks)
	sum.GapErrors = r.ledger.ErrorsBetween(sum.MaxAckGapFrom, sum.MaxAckGapFrom.Add(sum.MaxAckGap))
	sum.Settle, sum.Report = settleAndVerify(ctx, t, c, r.load.Conversations(), acks, settle)
	t.Log("\n" + sum.String())
	checkErrors(t, r.ledger, sum)
	return sum
}

// salvageSettle bounds the settling of a run that stopped early: the
// cluster may be broken for good, the verification runs anyway.
const salvageSettle = 30 * time.Second

// salvage returns a cleanup that, if the test stopped before finish (a
// harness wait failed), stops the load and still verifies what was
// acknowledged against the running nodes: a failed run then also says
// whether acknowledged messages were lost.
func (r *runner) salvage(seed uint64, start time.Time, senders int) func() {
	return func() {
		if r.finished {
			return
		}
		r.t.Log("the run stopped early; verifying the messages acknowledged so far")
		r.load.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), salvageSettle+time.Minute)
		defer cancel()
		r.finish(ctx, seed, start, senders, salvageSettle)
	}
}

// checkErrors fails the test on permanent rejections (a conversation that
// worked before a fault must work after it) and on errors a client saw
// because a coordinator was lost or a lease moved (a pause, not an error).
func checkErrors(t *testing.T, ledger *Ledger, sum Summary) {
	t.Helper()
	if n := sum.Rejected(); n > 0 {
		samples := ledger.ErrorSamples()
		for k, v := range sum.Errors {
			if strings.HasPrefix(k, ErrClassRejected) {
				t.Errorf("%d sends rejected with %s, e.g. %s", v, k, samples[k])
			}
		}
	}
	for _, g := range sum.Failing() {
		if g.Cause != CauseRejected {
			t.Errorf("client-visible error: %s", g)
		}
	}
}

// TestChaosWipedReplica loses one node (R-W = 1) with its disk under load:
// killed, data directory deleted, restarted empty. Nothing acknowledged may
// be lost, and the empty node must end with the same data as the others.
func TestChaosWipedReplica(t *testing.T) {
	seed := runSeed(t)
	c := startCluster(t, chaosNodes)
	ledger := NewLedger()
	cfg := LoadConfig{AppID: devApp, Seed: seed, Senders: 6, Logger: testLogger(t)}
	load, err := StartLoad(t.Context(), cfg, c.ClientURLs(nil), ledger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(load.Stop)
	r := newRunner(t, c, load, ledger, seed)
	start := time.Now()
	t.Cleanup(r.salvage(seed, start, cfg.Senders))
	hold(quietGap)
	r.wipe(r.pick(c.Running()))
	hold(quietGap)
	r.waitProgress(2*cfg.Senders, readyTimeout)
	load.Stop()

	r.finish(t.Context(), seed, start, cfg.Senders, settleTimeout)
}

// quorumSendTimeout bounds each send made without a write quorum: it must
// fail (an error answer, or no answer within the bound), never be acked.
const quorumSendTimeout = 10 * time.Second

// TestChaosQuorumLoss kills 2 of 3 nodes: the survivor holds one replica
// of every shard, fewer than W=2, so every send must fail instead of being
// acknowledged, both right after the kill and once the survivor saw the
// others dead. After a restart sends succeed again and every acknowledged
// message is on every replica.
func TestChaosQuorumLoss(t *testing.T) {
	c := startCluster(t, chaosNodes)
	survivor := c.Node(0)
	ctx := t.Context()
	ccfg := client.DefaultConfig(devApp, survivor.ClientURL())
	ccfg.ReconnectBaseDelay, ccfg.ReconnectMaxDelay = reconnectBase, reconnectMax
	conn, err := client.Dial(ctx, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl, err := conn.Login(ctx, "chaos-q0", client.LoginOptions{OnEvent: func(client.Event) {}})
	if err != nil {
		t.Fatal(err)
	}
	conv, err := cl.CreateConversation(ctx, client.CreateOptions{Name: "chaos-quorum", Members: []string{"chaos-q1"}})
	if err != nil {
		t.Fatal(err)
	}
	var acks []Ack
	send := func(payload string) (Ack, error) {
		first := time.Now()
		sctx, cancel := context.WithTimeout(ctx, quorumSendTimeout)
		defer cancel()
		m, err := conv.Send(sctx, &client.OutgoingMessage{Content: payload, DedupToken: payload})
		if err != nil {
			return Ack{}, err
		}
		return Ack{Conv: conv.ID(), ID: m.ID, Timestamp: m.Timestamp.UnixMilli(), Payload: payload, FirstSent: first, Acked: time.Now()}, nil
	}
	for i := range 5 {
		a, err := send(fmt.Sprintf("before#%d", i))
		if err != nil {
			t.Fatalf("send before the kill: %v", err)
		}
		acks = append(acks, a)
	}

	c.Node(1).Kill(t)
	c.Node(2).Kill(t)
	sendAll := func(round string) {
		const n = 4
		var wg sync.WaitGroup
		results := make([]error, n)
		for i := range n {
			wg.Go(func() {
				a, err := send(fmt.Sprintf("%s#%d", round, i))
				if err == nil {
					results[i] = fmt.Errorf("acknowledged with 1 of 3 replicas reachable (W=2): %s@%d", a.ID, a.Timestamp)
					return
				}
				t.Logf("%s send %d failed as it must: %s: %v", round, i, Classify(err), err)
			})
		}
		wg.Wait()
		if err := errors.Join(results...); err != nil {
			t.Error(err)
		}
	}
	sendAll("no-quorum")
	harness.CheckFor(t, readyTimeout, settleInterval, func() error {
		cs, err := survivor.Admin().Cluster(ctx)
		if err != nil {
			return err
		}
		for _, id := range []string{c.Node(1).ID(), c.Node(2).ID()} {
			if m, ok := cs.Member(id); ok && m.Alive {
				return fmt.Errorf("%s still sees %s alive", survivor.ID(), id)
			}
		}
		return nil
	})
	sendAll("no-quorum-detected")

	c.Node(1).Restart(t)
	c.Node(2).Restart(t)
	harness.CheckFor(t, readyTimeout, settleInterval, func() error {
		a, err := send("after#0")
		if err != nil {
			return err
		}
		acks = append(acks, a)
		return nil
	})
	for i := 1; i < 5; i++ {
		a, err := send(fmt.Sprintf("after#%d", i))
		if err != nil {
			t.Fatalf("send after the restart: %v", err)
		}
		acks = append(acks, a)
	}
	_, rep := settleAndVerify(ctx, t, c, []string{conv.ID()}, acks, settleTimeout)
	if rep != nil {
		t.Logf("quorum loss: %d acknowledged, %d stored without ack (sends that failed), replicas read %d", rep.Acked, rep.StoredUnacked, rep.Replicas)
	}
}

// TestChaosFormation runs the misconfiguration faults once under load:
// a restart without --join, a node with another shard count, a duplicate
// node id (each refused, the roster unchanged) and a node whose clock is
// offset within and beyond the lease margin. Nothing acknowledged may be
// lost and the replicas must end identical.
func TestChaosFormation(t *testing.T) {
	seed := runSeed(t)
	c := startCluster(t, chaosNodes)
	ledger := NewLedger()
	cfg := LoadConfig{AppID: devApp, Seed: seed, Logger: testLogger(t)}
	load, err := StartLoad(t.Context(), cfg, c.ClientURLs(nil), ledger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(load.Stop)
	r := newRunner(t, c, load, ledger, seed)
	start := time.Now()
	t.Cleanup(r.salvage(seed, start, cfg.withDefaults().Senders))
	hold(quietGap)
	r.formation()
	hold(quietGap)
	r.waitProgress(2*cfg.withDefaults().Senders, readyTimeout)
	load.Stop()
	sum := r.finish(t.Context(), seed, start, cfg.withDefaults().Senders, settleTimeout)
	if sum.Acked == 0 {
		t.Error("no message was acknowledged")
	}
	for _, k := range []string{FaultNoJoin, FaultShards, FaultDuplicate} {
		if sum.Refused[k] != 1 {
			t.Errorf("%s: %d refused, want 1", k, sum.Refused[k])
		}
	}
}
