package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/test/harness"
)

// BenchmarkStoreSyncedCommitsPaced makes synced message-sized commits
// (CommitUnpended, then a read of the de-duplication key, as a send does)
// from 64 goroutines at a paced total rate, on a real on-disk store: what
// the write-ahead log's sync interval (walMinSyncInterval) trades, store
// CPU per commit (cpu-us/op) against commit latency (lat-ms/op, the mean).
// Compare builds with different intervals; ns/op is only the pace.
func BenchmarkStoreSyncedCommitsPaced(b *testing.B) {
	for _, rate := range []int{500, 4000, 12000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			st := openBenchStore(b)
			var next atomic.Int64
			var lat atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			before := harness.ProcessCPU(b)
			for range 64 {
				wg.Go(func() {
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
							time.Sleep(d)
						}
						t0 := time.Now()
						ops := benchWrite(i)
						if err := st.CommitUnpended(7, PendingWrite{Epoch: 1, ID: uint64(i), Ops: ops}); err != nil {
							b.Error(err)
							return
						}
						if _, err := st.Get(ops[2].Key); err != nil {
							b.Error(err)
							return
						}
						lat.Add(int64(time.Since(t0)))
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64((harness.ProcessCPU(b)-before).Microseconds())/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(lat.Load())/float64(b.N)/1e6, "lat-ms/op")
		})
	}
}
