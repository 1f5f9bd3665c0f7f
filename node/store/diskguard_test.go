package store

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeDisk is a filesystem whose free space the test sets (Config.StatFS).
type fakeDisk struct {
	free  atomic.Uint64
	calls atomic.Int64
}

func (d *fakeDisk) statfs(string) (uint64, error) {
	d.calls.Add(1)
	return d.free.Load(), nil
}

const testReserve = 100 << 20

// openGuarded opens a store on an in-memory filesystem whose free space is
// free, with a 100 MiB reserve, checked every interval.
func openGuarded(t *testing.T, free uint64, interval time.Duration, reg prometheus.Registerer) (*Store, *fakeDisk) {
	t.Helper()
	d := &fakeDisk{}
	d.free.Store(free)
	st, err := Open(Config{Dir: "db", FS: vfs.NewMem(), MinFreeBytes: testReserve, DiskCheckInterval: interval,
		StatFS: d.statfs, Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, d
}

// waitLow polls until the store's guard reports want.
func waitLow(t *testing.T, st *Store, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st.DiskLow() != want {
		if time.Now().After(deadline) {
			t.Fatalf("DiskLow stayed %v, want %v (state %+v)", !want, want, st.Disk())
		}
		time.Sleep(time.Millisecond)
	}
}

func shardKey(s string) []byte { return NewKey(7, "app", FamConv).Str(s).Bytes() }

// TestStoreDiskGuardRefusesAdds: below the reserve, every commit that adds
// data is refused with ErrDiskLow (naming the free space and the reserve)
// and writes nothing; deletes, the commit of writes already pending, a
// term's record and the node's bookkeeping pass.
func TestStoreDiskGuardRefusesAdds(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, d := openGuarded(t, 1<<30, time.Hour, reg)
	// Held before the disk turns low: a write pending, a record to delete.
	held := PendingWrite{Epoch: 1, ID: 1, Ops: benchWrite(1)}
	if err := st.PutPending(7, held); err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	b.Set(shardKey("old"), []byte("v"))
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}

	d.free.Store(50 << 20)
	st.disk.update(d.free.Load()) // the check the goroutine makes
	if !st.DiskLow() {
		t.Fatal("50 MiB free under a 100 MiB reserve is not low")
	}

	refused := map[string]func() error{
		"Commit set": func() error {
			b := st.NewBatch()
			b.Set(shardKey("new"), []byte("v"))
			b.Delete(shardKey("old")) // a set among deletes still adds
			return st.Commit(b)
		},
		"Apply merge": func() error {
			return st.Apply([]Op{{Kind: OpMergeFields, Key: shardKey("doc"), Value: EncodeFields([]Field{{Name: "a", Value: []byte("1")}})}})
		},
		"PutPending":     func() error { return st.PutPending(7, PendingWrite{Epoch: 1, ID: 2, Ops: benchWrite(2)}) },
		"CommitUnpended": func() error { return st.CommitUnpended(7, PendingWrite{Epoch: 1, ID: 3, Ops: benchWrite(3)}) },
		"ApplyVersioned": func() error { return st.ApplyVersioned(benchWrite(4)) },
	}
	for name, f := range refused {
		err := f()
		if !errors.Is(err, ErrDiskLow) {
			t.Fatalf("%s while low: %v, want ErrDiskLow", name, err)
		}
		if !strings.Contains(err.Error(), "50 MiB free, reserve 100 MiB") {
			t.Fatalf("%s: error %q does not say the free space and the reserve", name, err)
		}
	}
	if _, err := st.Get(shardKey("new")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused commit wrote its record: %v", err)
	}
	for i := 2; i <= 4; i++ {
		if _, err := st.Get(benchWrite(i)[0].Key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused write %d is visible: %v", i, err)
		}
	}
	if got := metricValue(t, reg, "imnode_store_disk_refused_writes_total"); got != float64(len(refused)) {
		t.Fatalf("refused writes counted %v, want %d", got, len(refused))
	}

	passed := []struct {
		name string
		f    func() error
	}{
		{"Commit delete", func() error {
			b := st.NewBatch()
			b.Delete(shardKey("old"))
			b.DeleteRange(shardKey("a"), shardKey("b"))
			return st.Commit(b)
		}},
		{"CommitPending", func() error {
			ok, err := st.CommitPending(7, held.Epoch, held.ID)
			if err == nil && !ok {
				err = errors.New("the held write was not found")
			}
			return err
		}},
		{"CommitWrite", func() error { return st.CommitWrite(7, PendingWrite{Epoch: 1, ID: 5, Ops: benchWrite(5)}) }},
		{"ResolveShard", func() error { return st.ResolveShard(7, 2) }},
		{"ApplyInternal", func() error {
			return st.ApplyInternal([]Op{{Kind: OpSet, Key: []byte("\xff\xff\xffmarker"), Value: []byte("8 bytes!")}})
		}},
		{"DropPendingUpTo", func() error { _, err := st.DropPendingUpTo(7, 10); return err }},
		{"DeleteShard", func() error { return st.DeleteShard(9) }},
	}
	for _, p := range passed {
		if err := p.f(); err != nil {
			t.Fatalf("%s while low: %v", p.name, err)
		}
	}
	if _, err := st.Get(held.Ops[0].Key); err != nil {
		t.Fatalf("the held write's commit is not visible: %v", err)
	}
	if e, _ := st.ShardEpoch(7); e != 2 {
		t.Fatalf("term after ResolveShard while low: %d, want 2", e)
	}
	if got := metricValue(t, reg, "imnode_store_disk_refused_writes_total"); got != float64(len(refused)) {
		t.Fatalf("refused writes counted %v after passing writes, want %d", got, len(refused))
	}
}

// TestStoreDiskGuardHysteresis: the poll turns the store low below the
// reserve and back only above the reserve plus a quarter, so free space
// wobbling around the reserve does not flap it.
func TestStoreDiskGuardHysteresis(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, d := openGuarded(t, 200<<20, 5*time.Millisecond, reg)
	if st.DiskLow() {
		t.Fatal("low with 200 MiB free")
	}
	d.free.Store(99 << 20)
	waitLow(t, st, true)
	if v := metricValue(t, reg, "imnode_store_disk_low"); v != 1 {
		t.Fatalf("imnode_store_disk_low = %v while low", v)
	}
	// Above the reserve but within the margin: still low, for several
	// polls.
	d.free.Store(120 << 20)
	for n := d.calls.Load() + 3; d.calls.Load() < n; {
		time.Sleep(time.Millisecond)
	}
	if !st.DiskLow() || st.Disk().Free != 120<<20 {
		t.Fatalf("left low within the margin: %+v", st.Disk())
	}
	b := st.NewBatch()
	b.Set(shardKey("k"), []byte("v"))
	if err := st.Commit(b); !errors.Is(err, ErrDiskLow) {
		t.Fatalf("commit within the margin: %v", err)
	}
	d.free.Store(126 << 20)
	waitLow(t, st, false)
	if err := st.Commit(b); err != nil {
		t.Fatalf("commit after recovery: %v", err)
	}
	if v := metricValue(t, reg, "imnode_store_disk_free_bytes"); v != 126<<20 {
		t.Fatalf("imnode_store_disk_free_bytes = %v", v)
	}
}

// metricValue returns the value of the gauge or counter name in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if c := mf.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestStoreDiskGuardRecheckAfterWrites: commits that write more than
// diskRecheckBytes trigger a check without waiting for the poll (an hour
// here), so a burst cannot overrun the reserve between polls.
func TestStoreDiskGuardRecheckAfterWrites(t *testing.T) {
	st, d := openGuarded(t, 1<<30, time.Hour, nil)
	d.free.Store(10 << 20)
	val := make([]byte, 256<<10)
	for i := range diskRecheckBytes/len(val) + 1 {
		b := st.NewBatch()
		b.Set(shardKey(fmt.Sprint(i)), val)
		if err := st.Commit(b); err != nil && !errors.Is(err, ErrDiskLow) {
			t.Fatal(err)
		}
	}
	waitLow(t, st, true)
}

// TestStoreDiskGuardStops: Close stops the guard's goroutine; no guard runs
// without a reserve.
func TestStoreDiskGuardStops(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(1 << 30)
	st, err := Open(Config{Dir: "db", FS: vfs.NewMem(), MinFreeBytes: testReserve, DiskCheckInterval: time.Millisecond, StatFS: d.statfs})
	if err != nil {
		t.Fatal(err)
	}
	done := st.disk.done
	for n := d.calls.Load() + 2; d.calls.Load() < n; {
		time.Sleep(time.Millisecond)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("the guard's goroutine still runs after Close")
	}

	plain, err := Open(Config{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Close() }()
	if plain.disk.kick != nil || plain.DiskLow() {
		t.Fatal("a store without a reserve runs a guard")
	}
}
