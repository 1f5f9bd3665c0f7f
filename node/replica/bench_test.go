package replica

import (
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/test/harness"
)

// BenchmarkReplicaWriteOneNode writes message-sized batches (message, id
// index, de-duplication record; fsync'd) in parallel through the cluster KV
// of a single node (R = 1, W = 1) on a real on-disk store, then reads one
// key back through it, as a send's de-duplication check does. cpu-ns/op is
// the process's CPU time per write and read.
func BenchmarkReplicaWriteOneNode(b *testing.B) {
	rg, err := ring.New(ring.Config{Shards: 1, ReplicationFactor: 1}, 1, []ring.Member{{ID: "a", State: ring.StateActive}})
	if err != nil {
		b.Fatal(err)
	}
	n := &testNet{rg: rg, sets: map[string]*Set{}, down: map[string]bool{}, drop: map[dropKey]dropMode{},
		cutOff: map[string]bool{}, delay: map[dropKey]time.Duration{}}
	cfg := DefaultLocalConfig()
	cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum = "a", openTestStores(b, 1)[0], 1, 1
	cfg.Logger = slog.New(slog.DiscardHandler)
	rs, err := New(cfg, netPeers{self: "a", n: n})
	if err != nil {
		b.Fatal(err)
	}
	n.sets["a"] = rs
	rs.OnRing(nil, rg)
	rs.CatchUpAlone()
	rs.Start()
	b.Cleanup(rs.Shutdown)
	benchWaitTerm(b, rs)
	benchWrites(b, rs.KV())
}

// benchWrites writes message-sized batches in parallel through kv and reads
// each one's de-duplication key back, and reports the process's CPU time
// per write (cpu-ns/op).
func benchWrites(b *testing.B, kv store.KV) {
	key := func(fam store.Family, i int64) []byte {
		return store.NewKey(0, "app", fam).Str("conv").Str(strconv.FormatInt(i, 10)).Bytes()
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	before := harness.ProcessCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			bt := kv.NewBatch()
			bt.Set(key(store.FamMsg, i), make([]byte, 200))
			bt.Set(key(store.FamMsgID, i), []byte("12345678"))
			bt.Set(key(store.FamDedup, i), []byte("mid"))
			if err := kv.Commit(bt); err != nil {
				b.Error(err)
				return
			}
			if _, err := kv.Get(key(store.FamDedup, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((harness.ProcessCPU(b)-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkReplicaWriteThreeNodes is BenchmarkReplicaWriteOneNode on three
// replica sets of one shard (R = 3, W = 2) in one process, linked by the
// tests' in-memory network, each with its own on-disk store; the writes go
// through the coordinator's cluster KV, and cpu-ns/op is the CPU of all
// three per write and read (the commit notices ride on later writes).
func BenchmarkReplicaWriteThreeNodes(b *testing.B) {
	n, reps := newTestNetConfig(b, func(*Config) {})
	rs := n.sets[reps[0]]
	benchWaitTerm(b, rs)
	benchWrites(b, rs.KV())
}

// benchWaitTerm waits until rs writes shard 0 under a term.
func benchWaitTerm(b *testing.B, rs *Set) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := rs.writeEpoch(0); ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("no term")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
