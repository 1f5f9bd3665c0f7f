package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/test/harness"
)

// Pacing of the fault schedule. The holds are long enough for the failure
// detector to notice (memberlist probes within about a second) and for
// senders to hit the fault; the gaps let the cluster serve under normal
// conditions between faults, so every fault starts from a working cluster.
const (
	killDowntime   = 3 * time.Second
	partitionHold  = 6 * time.Second
	quietGap       = 4 * time.Second
	drainTimeout   = 2 * time.Minute
	settleTimeout  = 2 * time.Minute
	settleInterval = 250 * time.Millisecond
	// readyTimeout bounds the harness's waits for a restarted or new node
	// to be ready and the cluster converged: catch-up under load on a busy
	// 2-core machine takes longer than the harness default.
	readyTimeout = 90 * time.Second
)

// runner injects faults into a harness cluster under load. It runs on the
// test goroutine only: the harness fails the test through t.
type runner struct {
	t      *testing.T
	c      *harness.Cluster
	load   *Load
	ledger *Ledger
	rng    *rand.Rand
	log    *slog.Logger
	faults map[string]int
	// diskFullOutcomes counts how the disk-full faults ended.
	diskFullOutcomes map[string]int
	// refused and accepted count the misconfigured starts by kind.
	refused, accepted map[string]int
	// finished is set once the run reached its verification.
	finished bool
}

func newRunner(t *testing.T, c *harness.Cluster, load *Load, ledger *Ledger, seed uint64) *runner {
	nameNodes(c, ledger)
	return &runner{
		t: t, c: c, load: load, ledger: ledger,
		rng:    rand.New(rand.NewPCG(seed, 0x6368616f73)), //nolint:gosec // picks nodes and faults
		log:    testLogger(t),
		faults: map[string]int{}, refused: map[string]int{}, accepted: map[string]int{}, diskFullOutcomes: map[string]int{},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// admins returns the admin clients of the running nodes by id.
func admins(c *harness.Cluster) map[string]*adminapi.Client {
	out := map[string]*adminapi.Client{}
	for _, nd := range c.Running() {
		out[nd.ID()] = nd.Admin()
	}
	return out
}

// hold waits d: the paced part of the schedule (a fault held open, or a
// quiet gap under load), not a wait for a condition.
func hold(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

func (r *runner) refreshURLs() {
	r.load.SetURLs(r.c.ClientURLs(nil))
	nameNodes(r.c, r.ledger)
}

// nameNodes tells the ledger which node each running node's client URL is.
func nameNodes(c *harness.Cluster, ledger *Ledger) {
	byURL := map[string]string{}
	for _, nd := range c.Running() {
		byURL[nd.ClientURL()] = nd.ID()
	}
	ledger.NameNodes(byURL)
}

// begin records that a fault of kind on nd (nil: a new node) starts and
// returns when.
func (r *runner) begin(kind string, nd *harness.Node) time.Time {
	id := "new node"
	if nd != nil {
		id = nd.ID()
	}
	r.ledger.FaultStarted(kind + " " + id)
	return time.Now()
}

func (r *runner) pick(nodes []*harness.Node) *harness.Node {
	return nodes[r.rng.IntN(len(nodes))]
}

func (r *runner) injected(kind string, nd *harness.Node, start time.Time) {
	r.faults[kind]++
	r.ledger.FaultEnded()
	id := "new"
	if nd != nil {
		id = nd.ID()
	}
	r.log.Info("Fault done", "kind", kind, "node", id, "took", time.Since(start).Round(time.Millisecond).String(),
		"acked", r.ledger.AckCount(), "running", len(r.c.Running()))
}

// kill SIGKILLs nd, keeps it down for killDowntime and restarts it on its
// data directory.
func (r *runner) kill(nd *harness.Node) {
	start := r.begin(FaultKill, nd)
	r.log.Info("Killing", "node", nd.ID())
	nd.Kill(r.t)
	hold(killDowntime)
	r.log.Info("Restarting", "node", nd.ID())
	nd.Restart(r.t)
	r.refreshURLs()
	r.injected(FaultKill, nd, start)
}

// partition cuts nd's peer traffic from every other running node for
// partitionHold, then heals and waits for the cluster to converge.
func (r *runner) partition(nd *harness.Node) {
	start := r.begin(FaultPartition, nd)
	others := slices.DeleteFunc(r.c.Running(), func(o *harness.Node) bool { return o == nd })
	r.log.Info("Partitioning", "node", nd.ID(), "from", len(others))
	r.c.Partition(r.t, []*harness.Node{nd}, others)
	hold(partitionHold)
	r.log.Info("Healing", "node", nd.ID())
	r.c.Heal(r.t)
	r.c.WaitConverged(r.t)
	r.injected(FaultPartition, nd, start)
}

// join adds a node and waits until the cluster converged with it.
func (r *runner) join() *harness.Node {
	start := r.begin(FaultJoin, nil)
	r.log.Info("Adding a node")
	nd := r.c.AddNode(r.t)
	r.refreshURLs()
	r.injected(FaultJoin, nd, start)
	return nd
}

// drain drains nd (POST, then poll GET /admin/v1/drain until done) and
// stops it.
func (r *runner) drain(nd *harness.Node) {
	start := r.begin(FaultDrain, nd)
	r.log.Info("Draining", "node", nd.ID())
	adm := nd.Admin()
	if _, err := adm.StartDrain(r.t.Context()); err != nil {
		r.t.Fatalf("drain %s: %v", nd.ID(), err)
	}
	var last adminapi.DrainStatus
	harness.CheckFor(r.t, drainTimeout, settleInterval, func() error {
		ds, err := adm.Drain(r.t.Context())
		if err != nil {
			return err
		}
		last = ds
		if !ds.Done {
			return &drainPendingError{ds}
		}
		return nil
	})
	r.log.Info("Drained, stopping", "node", nd.ID(), "operation", last.Operation)
	nd.Stop(r.t)
	r.refreshURLs()
	r.c.WaitConverged(r.t)
	r.injected(FaultDrain, nd, start)
}

type drainPendingError struct{ ds adminapi.DrainStatus }

func (e *drainPendingError) Error() string {
	return "drain not done: " + strconv.Itoa(e.ds.ShardsLeft) + " shards left"
}

// wipe kills nd, deletes its data directory and restarts it empty. Losing
// one node's disk is within the guarantee only if no other replica is
// missing data, so the load pauses until every replica holds the same data
// first, and resumes before the kill.
func (r *runner) wipe(nd *harness.Node) {
	start := r.begin(FaultWipe, nd)
	r.load.Pause()
	took, err := Settle(r.t.Context(), admins(r.c), r.c.Options().ReplicationFactor, settleInterval, settleTimeout)
	r.load.Resume()
	if err != nil {
		r.t.Fatalf("before wiping %s: %v", nd.ID(), err)
	}
	r.log.Info("Settled before wipe", "took", took.Round(time.Millisecond).String())
	hold(quietGap / 2)
	r.log.Info("Killing and wiping", "node", nd.ID(), "dataDir", nd.DataDir())
	nd.Kill(r.t)
	if err := os.RemoveAll(nd.DataDir()); err != nil {
		r.t.Fatal(err)
	}
	nd.Restart(r.t)
	r.refreshURLs()
	r.injected(FaultWipe, nd, start)
}

// misstartTimeout bounds how long a refused start may take: a duplicate
// id is given up after the local DuplicateGrace (10s).
const misstartTimeout = 45 * time.Second

// roster is the roster as one running node sees it, left nodes aside:
// "id:state" sorted.
func (r *runner) roster() string {
	for _, nd := range r.c.Running() {
		cs, err := nd.Admin().Cluster(r.t.Context())
		if err != nil {
			continue
		}
		var out []string
		for _, m := range cs.Members {
			if m.State != adminapi.StateLeft { // left ones are pruned from listings in time
				out = append(out, m.ID+":"+string(m.State))
			}
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	return ""
}

// misstart runs a start that must be refused with an error containing
// want, and checks the roster did not change.
func (r *runner) misstart(kind, id, dataDir string, join bool, extra []string, want string) {
	before := r.roster()
	log, err := r.c.TryStart(r.t, id, dataDir, join, extra, misstartTimeout)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(log, want) {
		r.accepted[kind]++
		r.t.Errorf("%s: start of %s was not refused naming %q: %v\n%s", kind, id, want, err, log)
	} else {
		r.refused[kind]++
		r.log.Info("Refused as expected", "kind", kind, "node", id, "exit", exit.ExitCode())
	}
	if after := r.roster(); after != before {
		r.t.Errorf("%s: the refused start changed the roster from %s to %s", kind, before, after)
	}
}

// noJoin SIGKILLs nd, tries it without --join (refused: alone it would
// form a second cluster), then restarts it properly.
func (r *runner) noJoin(nd *harness.Node) {
	start := r.begin(FaultNoJoin, nd)
	r.log.Info("Killing, then starting without --join", "node", nd.ID())
	nd.Kill(r.t)
	r.misstart(FaultNoJoin, nd.ID(), nd.DataDir(), false, nil, "alone it would form a second cluster")
	nd.Restart(r.t)
	r.refreshURLs()
	r.injected(FaultNoJoin, nd, start)
}

// otherShards starts a new node with twice the shard count, joining.
func (r *runner) otherShards() {
	start := r.begin(FaultShards, nil)
	id := fmt.Sprintf("imnode-misfit-%d", r.faults[FaultShards])
	shards := strconv.Itoa(2 * r.c.Options().Shards)
	r.log.Info("Starting a node with another shard count", "node", id, "shards", shards)
	r.misstart(FaultShards, id, filepath.Join(r.t.TempDir(), "data"), true, []string{"--shards", shards}, "shard count (--shards)")
	r.injected(FaultShards, nil, start)
}

// duplicate starts a second process with nd's id on an empty directory.
func (r *runner) duplicate(nd *harness.Node) {
	start := r.begin(FaultDuplicate, nd)
	r.log.Info("Starting a duplicate", "node", nd.ID())
	r.misstart(FaultDuplicate, nd.ID(), filepath.Join(r.t.TempDir(), "data"), true, nil, "duplicate node id")
	r.injected(FaultDuplicate, nd, start)
}

// skew restarts nd with its clock offset by off, holds under load, and
// restarts it with the real clock.
func (r *runner) skew(kind string, nd *harness.Node, off time.Duration) {
	start := r.begin(kind, nd)
	r.log.Info("Restarting with a clock offset", "node", nd.ID(), "offset", off.String())
	nd.SetExtraArgs("--fault-clock-offset", off.String())
	nd.Restart(r.t)
	r.refreshURLs()
	hold(partitionHold)
	nd.SetExtraArgs()
	r.log.Info("Restarting with the real clock", "node", nd.ID())
	nd.Restart(r.t)
	r.refreshURLs()
	r.injected(kind, nd, start)
}

// diskFullAfter is when the injected disk-full starts after the node
// serves; diskFullTimeout bounds the wait for the node to stop.
const (
	diskFullAfter   = 3 * time.Second
	diskFullTimeout = 60 * time.Second
)

// diskFull restarts nd with a disk that fills up once it serves, waits for
// it to stop on its first failed write, and restarts it with a working
// disk.
func (r *runner) diskFull(nd *harness.Node) {
	start := r.begin(FaultDiskFull, nd)
	r.log.Info("Restarting with a disk that fills up", "node", nd.ID(), "after", diskFullAfter.String())
	nd.Stop(r.t)
	nd.SetExtraArgs("--fault-disk-full-after", diskFullAfter.String())
	nd.RestartNoWait(r.t)
	r.refreshURLs()
	log, err := nd.WaitExit(r.t, diskFullTimeout)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3 && strings.Contains(log, "Disk full"):
		r.diskFullOutcomes["exit 3 (Disk full)"]++
	case errors.As(err, &exit) && exit.ExitCode() == 2 && (strings.Contains(log, "Errno(28)") || strings.Contains(log, "no space left on device")):
		// Pebble panics when it cannot rotate its WAL on a full disk.
		r.diskFullOutcomes["exit 2 (Pebble panic on ENOSPC)"]++
	case errors.Is(err, harness.ErrStillRunning):
		// Writes failed and were reported, the process went on; killed.
		r.diskFullOutcomes["still running after 60s"]++
	default:
		r.t.Errorf("%s with a full disk: %v, want it stopped by the full disk:\n%s", nd.ID(), err, log)
	}
	nd.SetExtraArgs()
	r.log.Info("Restarting with free space", "node", nd.ID())
	nd.Restart(r.t)
	r.refreshURLs()
	r.injected(FaultDiskFull, nd, start)
}

// diskLow makes nd's store see a disk below its reserve for partitionHold
// under load, checks that it kept running and refused writes (low in its
// admin status), then gives it its real disk back and waits until it takes
// writes again and the cluster converged.
func (r *runner) diskLow(nd *harness.Node) {
	start := r.begin(FaultDiskLow, nd)
	r.log.Info("Filling the disk below the reserve", "node", nd.ID())
	r.setDiskFree(nd, 0, true)
	hold(partitionHold)
	if st, err := nd.Admin().Node(r.t.Context()); err != nil || !st.Disk.Low {
		r.t.Errorf("%s with its disk below the reserve: status %+v, %v; want it running and low", nd.ID(), st.Disk, err)
	}
	r.log.Info("Freeing the disk", "node", nd.ID())
	r.setDiskFree(nd, -1, false)
	r.c.WaitConverged(r.t)
	r.injected(FaultDiskLow, nd, start)
}

// setDiskFree makes nd's store see freeMiB free (negative: its real disk)
// and waits until its admin status says the disk is (not) low.
func (r *runner) setDiskFree(nd *harness.Node, freeMiB int64, low bool) {
	if err := nd.Admin().Faults(r.t.Context(), adminapi.FaultRequest{DiskFreeMiB: &freeMiB}); err != nil {
		r.t.Fatalf("disk fault on %s: %v", nd.ID(), err)
	}
	harness.CheckFor(r.t, readyTimeout, settleInterval, func() error {
		st, err := nd.Admin().Node(r.t.Context())
		if err == nil && st.Disk.Low != low {
			err = fmt.Errorf("%s: disk low %v, want %v", nd.ID(), st.Disk.Low, low)
		}
		return err
	})
}

// formation runs each misconfiguration fault once.
func (r *runner) formation() {
	r.noJoin(r.pick(r.c.Running()))
	hold(quietGap)
	r.otherShards()
	hold(quietGap)
	r.duplicate(r.pick(r.c.Running()))
	hold(quietGap)
	r.skew(FaultSkewWithin, r.pick(r.c.Running()), 100*time.Millisecond)
	hold(quietGap)
	r.skew(FaultSkewBeyond, r.pick(r.c.Running()), 2*time.Second)
	hold(quietGap)
	r.diskFull(r.pick(r.c.Running()))
	hold(quietGap)
	r.diskLow(r.pick(r.c.Running()))
}

// random injects one fault chosen at random among those that keep the
// cluster between 3 and 5 nodes.
func (r *runner) random() {
	running := r.c.Running()
	kinds := []string{FaultKill, FaultKill, FaultPartition, FaultPartition, FaultWipe,
		FaultNoJoin, FaultShards, FaultDuplicate, FaultSkewWithin, FaultSkewBeyond, FaultDiskLow}
	if len(running) < 5 {
		kinds = append(kinds, FaultJoin)
	}
	if len(running) > 3 {
		kinds = append(kinds, FaultDrain)
	}
	switch k := kinds[r.rng.IntN(len(kinds))]; k {
	case FaultKill:
		r.kill(r.pick(running))
	case FaultPartition:
		r.partition(r.pick(running))
	case FaultWipe:
		r.wipe(r.pick(running))
	case FaultJoin:
		r.join()
	case FaultDrain:
		r.drain(r.pick(running))
	case FaultNoJoin:
		r.noJoin(r.pick(running))
	case FaultShards:
		r.otherShards()
	case FaultDuplicate:
		r.duplicate(r.pick(running))
	case FaultSkewWithin:
		r.skew(k, r.pick(running), 100*time.Millisecond)
	case FaultSkewBeyond:
		r.skew(k, r.pick(running), 2*time.Second)
	case FaultDiskLow:
		r.diskLow(r.pick(running))
	}
}

// waitProgress polls until the senders got n more acks than before, or
// fails the test: after the faults healed, the cluster must serve again.
func (r *runner) waitProgress(n int, timeout time.Duration) {
	before := r.ledger.AckCount()
	harness.CheckFor(r.t, timeout, settleInterval, func() error {
		if got := r.ledger.AckCount() - before; got < n {
			return &progressError{got: got, want: n}
		}
		return nil
	})
}

type progressError struct{ got, want int }

func (e *progressError) Error() string {
	return "no progress after the faults: " + strconv.Itoa(e.got) + " new acks, want " + strconv.Itoa(e.want)
}

// settleAndVerify stops nothing: the caller stopped the load. It waits for
// the cluster to settle and verifies every acknowledged message against
// every replica, returning the report (nil if it could not read it).
func settleAndVerify(ctx context.Context, t *testing.T, c *harness.Cluster, convs []string, acks []Ack, timeout time.Duration) (time.Duration, *Report) {
	t.Helper()
	r := c.Options().ReplicationFactor
	took, err := Settle(ctx, admins(c), r, settleInterval, timeout)
	if err != nil {
		t.Error(err)
	}
	rep, err := Verify(ctx, admins(c), devApp, convs, acks, r)
	if err != nil {
		t.Error(err)
		return took, nil
	}
	if err := rep.Err(); err != nil {
		t.Error(err)
	} else if len(rep.Problems) > 0 {
		t.Log("informational findings:\n  " + strings.Join(rep.Problems, "\n  "))
	}
	return took, rep
}
