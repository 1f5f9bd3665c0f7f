package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/test/harness"
)

// testNode is one in-process cluster member with its own Pebble store and
// metrics registry.
type testNode struct {
	*Cluster
	st  *store.Store
	reg *prometheus.Registry
}

// metric returns the sum of the values of the metric family name.
func (n *testNode) metric(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

const testShards = 4

// openTestStores opens n stores in temporary directories (closed in
// t.Cleanup), so a test can fill them before the nodes start.
func openTestStores(t *testing.T, n int) []*store.Store {
	t.Helper()
	var out []*store.Store
	for range n {
		st, err := store.Open(store.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		out = append(out, st)
	}
	return out
}

// startTestNodes starts one node per store on 127.0.0.1 (R = the node
// count, W = 1, testShards shards), the first alone and the others joining
// it, each after the previous one is active, and waits until every node is
// active with every shard it replicates ready. tune adjusts each config.
func startTestNodes(t *testing.T, stores []*store.Store, tune func(i int, cfg *Config)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i, st := range stores {
		reg := prometheus.NewRegistry()
		cfg := DefaultLocalConfig()
		cfg.NodeID, cfg.Store, cfg.Shards = fmt.Sprintf("n%d", i), st, testShards
		cfg.ReplicationFactor, cfg.WriteQuorum = len(stores), 1
		cfg.GossipAddr, cfg.TransportAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Replica.AntiEntropyInterval = time.Hour
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", i)
		cfg.Registerer = reg
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		if tune != nil {
			tune(i, &cfg)
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Shutdown)
		nodes = append(nodes, &testNode{Cluster: c, st: st, reg: reg})
	}
	harness.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		for _, n := range nodes {
			if len(n.Snapshot().Members) != len(nodes) || n.Ring().Epoch() != nodes[0].Ring().Epoch() {
				return fmt.Errorf("%s sees %d members at epoch %d", n.cfg.NodeID, len(n.Snapshot().Members), n.Ring().Epoch())
			}
			if !n.Active() {
				return fmt.Errorf("%s not active", n.cfg.NodeID)
			}
			for _, sh := range n.Replicated() {
				if !n.rep.Ready(uint16(sh)) {
					return fmt.Errorf("%s: shard %d not ready", n.cfg.NodeID, sh)
				}
			}
		}
		return nil
	})
	return nodes
}

// oldVersion is a version well before any anti-entropy cutoff.
func oldVersion(i int) uint64 {
	return uint64(time.Now().Add(-time.Hour).UnixMilli())<<replica.HLCLogicalBits + uint64(i)
}

func aeKey(shard uint16, i int) []byte {
	return store.NewKey(shard, "app", store.FamMsg).Str("conv").Int64(int64(i)).Bytes()
}

// aeRecords returns n records of shard (keys 0..n-1).
func aeRecords(shard uint16, n int) []store.Op {
	ops := make([]store.Op, 0, n)
	for i := range n {
		ops = append(ops, store.Op{Kind: store.OpSet, Key: aeKey(shard, i),
			Value: store.EncodeVersioned(oldVersion(i), false, fmt.Appendf(nil, "message %d", i))})
	}
	return ops
}

func mustApply(t *testing.T, st *store.Store, ops ...store.Op) {
	t.Helper()
	if err := st.ApplyVersioned(ops); err != nil {
		t.Fatal(err)
	}
}

func rangeDigest(t *testing.T, st *store.Store, shard uint16) store.RangeDigest {
	t.Helper()
	rd, err := st.ShardRangeDigest(shard, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// waitConverged polls until every node's digest of every shard equals the
// first node's.
func waitConverged(t *testing.T, nodes []*testNode) {
	t.Helper()
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for sh := range uint16(testShards) {
			want := rangeDigest(t, nodes[0].st, sh)
			for _, n := range nodes[1:] {
				if got := rangeDigest(t, n.st, sh); got.Diff(&want) != 0 {
					return fmt.Errorf("shard %d: %s differs from %s in buckets %064b", sh, n.cfg.NodeID, nodes[0].cfg.NodeID, got.Diff(&want))
				}
			}
		}
		return nil
	})
}

// TestClusterAntiEntropyCopiesOnlyDifferingBuckets: one replica lacks a few
// records and holds an older version of another; a repair from the other
// replica copies exactly the records of the buckets that differ, and the
// replicas end equal.
func TestClusterAntiEntropyCopiesOnlyDifferingBuckets(t *testing.T) {
	nodes := startTestNodes(t, openTestStores(t, 2), nil)
	const shard, common = 2, 3200
	base := aeRecords(shard, common)
	mustApply(t, nodes[0].st, base...)
	mustApply(t, nodes[1].st, base...)
	// Only n1 has three more records and a newer version of record 7.
	extra := []store.Op{
		{Kind: store.OpSet, Key: aeKey(shard, 100000), Value: store.EncodeVersioned(oldVersion(1), false, []byte("a"))},
		{Kind: store.OpSet, Key: aeKey(shard, 100001), Value: store.EncodeVersioned(oldVersion(2), false, []byte("b"))},
		{Kind: store.OpSet, Key: aeKey(shard, 100002), Value: store.EncodeVersioned(oldVersion(3), true, nil)},
		{Kind: store.OpSet, Key: aeKey(shard, 7), Value: store.EncodeVersioned(oldVersion(1000), false, []byte("edited"))},
	}
	mustApply(t, nodes[1].st, extra...)
	var want uint64
	for _, op := range extra {
		want |= 1 << store.DigestBucket(op.Key)
	}
	theirs := rangeDigest(t, nodes[1].st, shard)
	mine := rangeDigest(t, nodes[0].st, shard)
	if d := mine.Diff(&theirs); d != want {
		t.Fatalf("buckets differing before the repair %064b, want %064b", d, want)
	}

	cutoff := uint64(time.Now().Add(-replica.AntiEntropySettle).UnixMilli()) << replica.HLCLogicalBits
	mask, copied, err := nodes[0].rep.Repair(context.Background(), shard, "n1", cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if mask != want || copied != theirs.Keys(want) {
		t.Fatalf("repair copied buckets %064b, %d records; want %064b, %d records (of %d)",
			mask, copied, want, theirs.Keys(want), theirs.Keys(store.AllBuckets))
	}
	if copied >= common/4 {
		t.Fatalf("repair copied %d of %d records", copied, common)
	}
	if after := rangeDigest(t, nodes[0].st, shard); after.Diff(&theirs) != 0 {
		t.Fatalf("still differing after the repair: %064b", after.Diff(&theirs))
	}
	// Equal now: the next comparison copies nothing.
	if mask, copied, err := nodes[0].rep.Repair(context.Background(), shard, "n1", cutoff); err != nil || mask != 0 || copied != 0 {
		t.Fatalf("second repair: buckets %064b, %d records, %v; want none", mask, copied, err)
	}
	// Records newer than the cutoff do not count.
	mustApply(t, nodes[1].st, store.Op{Kind: store.OpSet, Key: aeKey(shard, 200000),
		Value: store.EncodeVersioned(cutoff+1, false, []byte("in flight"))})
	if mask, _, err := nodes[0].rep.Repair(context.Background(), shard, "n1", cutoff); err != nil || mask != 0 {
		t.Fatalf("repair over a record newer than the cutoff: buckets %064b, %v; want none", mask, err)
	}
}

// TestClusterAntiEntropyConverges: two replicas that each miss records of
// the other and disagree on a record's body under one version converge
// through catch-up and periodic anti-entropy, copying far less than the
// shard.
func TestClusterAntiEntropyConverges(t *testing.T) {
	stores := openTestStores(t, 2)
	const shard, common = 1, 3200
	base := aeRecords(shard, common)
	mustApply(t, stores[0], base...)
	mustApply(t, stores[1], base...)
	// Each replica has a record the other lacks, and record 9 has the same
	// version but another body on each (the merge keeps the greater bytes).
	v := oldVersion(9)
	mustApply(t, stores[0],
		store.Op{Kind: store.OpSet, Key: aeKey(shard, 100000), Value: store.EncodeVersioned(oldVersion(1), false, []byte("only on n0"))},
		store.Op{Kind: store.OpSet, Key: aeKey(shard, 9), Value: store.EncodeVersioned(v, false, []byte("body from n0"))})
	mustApply(t, stores[1],
		store.Op{Kind: store.OpSet, Key: aeKey(shard, 100001), Value: store.EncodeVersioned(oldVersion(2), false, []byte("only on n1"))},
		store.Op{Kind: store.OpSet, Key: aeKey(shard, 9), Value: store.EncodeVersioned(v, false, []byte("body from n1"))})
	d0, d1 := rangeDigest(t, stores[0], shard), rangeDigest(t, stores[1], shard)
	differing := d0.Diff(&d1)
	if n := bits.OnesCount64(differing); n == 0 || n > 3 {
		t.Fatalf("%d buckets differ before the start, want 1 to 3", n)
	}

	nodes := startTestNodes(t, stores, func(_ int, cfg *Config) { cfg.Replica.AntiEntropyInterval = 100 * time.Millisecond })
	waitConverged(t, nodes)
	for _, n := range nodes {
		for _, k := range [][]byte{aeKey(shard, 100000), aeKey(shard, 100001)} {
			if _, err := n.st.Get(k); err != nil {
				t.Fatalf("%s: record %x: %v", n.cfg.NodeID, k, err)
			}
		}
		rec, err := n.st.Get(aeKey(shard, 9))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, body, _ := store.DecodeVersioned(rec); string(body) != "body from n1" {
			t.Fatalf("%s: record 9 holds %q, want the greater body", n.cfg.NodeID, body)
		}
	}
	// Each sync copies at most the records of the differing buckets (a
	// few per cent of the shard); a whole-shard copy would be 3200.
	copied := nodes[0].metric(t, "imnode_replica_sync_keys_total") + nodes[1].metric(t, "imnode_replica_sync_keys_total")
	if limit := float64(common) / 2; copied > limit {
		t.Fatalf("syncs copied %.0f records, want at most %.0f (differing buckets hold %d)", copied, limit, d0.Keys(differing))
	}
	if copied == 0 {
		t.Fatal("nothing was copied")
	}
}

// TestClusterCatchUpReportsProgress: a node joining a cluster whose shards
// hold data reports, while it catches up (slowed down by a low
// SyncKeysPerSecond), the keys and bytes left per shard, then nothing.
func TestClusterCatchUpReportsProgress(t *testing.T) {
	stores := openTestStores(t, 2)
	// Two shards of 1200 records (two sync pages each), two empty ones.
	sizes := map[int][2]int64{}
	for sh := range uint16(testShards) {
		if sh < 2 {
			mustApply(t, stores[0], aeRecords(sh, 1200)...)
		}
		k, b, err := stores[0].ShardSize(sh)
		if err != nil {
			t.Fatal(err)
		}
		sizes[int(sh)] = [2]int64{k, b}
	}
	first := startTestNodes(t, stores[:1], func(_ int, cfg *Config) { cfg.ReplicationFactor = 2 })
	reg := prometheus.NewRegistry()
	cfg := DefaultLocalConfig()
	cfg.NodeID, cfg.Store, cfg.Shards, cfg.ReplicationFactor, cfg.WriteQuorum = "n1", stores[1], testShards, 2, 1
	cfg.GossipAddr, cfg.TransportAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Replica.AntiEntropyInterval = time.Hour
	// A shard's first page (1000 records) is followed by a 1 s pause:
	// long enough to watch the shard partly copied.
	cfg.Replica.SyncKeysPerSecond = 1000
	cfg.Seeds = []string{first[0].GossipAddr()}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", 1)
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	n1 := &testNode{Cluster: c, st: stores[1], reg: reg}

	// While catching up: every shard not ready yet is listed, and once the
	// sizes are known each reports what is left, never more than the
	// source's shard; one mid-copy shard has copied part of it.
	var sawQueued, sawPartial bool
	harness.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		st := n1.NodeStatus()
		for _, tr := range st.Receiving {
			if tr.KeysRemaining < -1 || tr.BytesRemaining < -1 || (tr.KeysRemaining < 0) != (tr.BytesRemaining < 0) {
				t.Fatalf("bad progress %+v", tr)
			}
			if tr.KeysRemaining < 0 {
				continue
			}
			if tr.From != "n0" || tr.To != "n1" || tr.KeysRemaining > sizes[tr.Shard][0] || tr.BytesRemaining > sizes[tr.Shard][1] {
				t.Fatalf("progress %+v beyond the source's shard of %v", tr, sizes[tr.Shard])
			}
			if tr.KeysRemaining > 0 && tr.KeysRemaining == sizes[tr.Shard][0] && tr.BytesRemaining == sizes[tr.Shard][1] {
				sawQueued = true
			}
			if tr.KeysRemaining > 0 && tr.KeysRemaining < sizes[tr.Shard][0] && tr.BytesRemaining < sizes[tr.Shard][1] {
				sawPartial = true
			}
		}
		if len(st.Receiving) > 0 && n1.metric(t, "imnode_replica_sync_bytes_remaining") < 0 {
			t.Fatal("negative bytes remaining")
		}
		if !sawQueued || !sawPartial {
			if len(st.Receiving) == 0 {
				t.Fatalf("caught up before progress was seen (queued %v, partial %v)", sawQueued, sawPartial)
			}
			return errors.New("no queued and partly copied shard seen yet")
		}
		return nil
	})
	if cs := n1.ClusterStatus(); len(cs.Moves) == 0 {
		t.Fatal("no moves in the cluster status while catching up")
	}
	harness.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if st := n1.NodeStatus(); len(st.Receiving) > 0 {
			return fmt.Errorf("still receiving %+v", st.Receiving)
		}
		return nil
	})
	if k, b := n1.metric(t, "imnode_replica_sync_keys_remaining"), n1.metric(t, "imnode_replica_sync_bytes_remaining"); k != 0 || b != 0 {
		t.Fatalf("caught up with %v keys and %v bytes remaining", k, b)
	}
	waitConverged(t, append(first, n1))
}

// syncPagePayload encodes an mSyncScan answer as serveSyncScan does.
// FuzzDecodeRangeDigest feeds arbitrary bytes to the anti-entropy answer
// decoders: they must never panic, and whatever they accept must
// round-trip.
// TestClusterDrainReportsBytesLeft: a drain measures the node's copies of
// the shards it hands off and reports the bytes of those not confirmed yet.
func TestClusterDrainReportsBytesLeft(t *testing.T) {
	stores := openTestStores(t, 2)
	for _, st := range stores {
		mustApply(t, st, aeRecords(0, 300)...)
	}
	_, total, err := stores[1].ShardSize(0)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startTestNodes(t, stores, nil)
	if p := nodes[1].DrainProgress(); p.Started || p.BytesLeft != -1 {
		t.Fatalf("progress before a drain: %+v", p)
	}
	if _, err := nodes[1].Drain(nil); err != nil {
		t.Fatal(err)
	}
	harness.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		p := nodes[1].DrainProgress()
		if p.BytesLeft < -1 || p.BytesLeft > total {
			t.Fatalf("bytes left %d, the node holds %d", p.BytesLeft, total)
		}
		if !p.Done || p.BytesLeft != 0 {
			return fmt.Errorf("drain progress %+v", p)
		}
		return nil
	})
}
