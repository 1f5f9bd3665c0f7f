package store

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// dedupKey is a de-duplication key of shard 3.
func dedupKey(app, dt string) []byte {
	return NewKey(3, app, FamDedup).Str("conv").Str("Tom").Str(dt).Bytes()
}

// dedupRec is a versioned de-duplication record as the engine writes one
// through the cluster (ts, accepted-at, message id).
func dedupRec(version uint64) []byte {
	return EncodeVersioned(version, false, []byte("0123456789abcdefmid"))
}

// nowVersion is a version of the store's clock now (see tombstoneMargin).
func nowVersion(st *Store) uint64 {
	return uint64(st.absent.now().UnixMilli()) << versionLogicalBits
}

// found reports whether Get finds key.
func found(t *testing.T, st *Store, key []byte) bool {
	t.Helper()
	_, err := st.Get(key)
	if errors.Is(err, ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// waitReady looks key (a key of shard 3) up until shard 3's filter is
// ready, within a deadline.
func waitReady(t *testing.T, st *Store, key []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _ = st.Get(key)
		st.absent.mu.Lock()
		sh := st.absent.shards[3]
		ready := sh != nil && sh.ready != nil && sh.building == nil
		st.absent.mu.Unlock()
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("shard 3's absence filter is not ready after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStoreAbsentAnswersOnlyAbsence fills a shard with de-duplication keys
// of two apps among other families: once its filter is ready, every key
// written is found and most absent keys are answered by the filter.
func TestStoreAbsentAnswersOnlyAbsence(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	var ops []Op
	for i := range 2000 {
		app := []string{"a", "b\x00c"}[i%2]
		ops = append(ops, Op{Kind: OpSet, Key: dedupKey(app, fmt.Sprint("dt", i)), Value: dedupRec(uint64(i + 1))},
			Op{Kind: OpSet, Key: NewKey(3, app, FamMsg).Str(fmt.Sprint("m", i)).Bytes(), Value: dedupRec(uint64(i + 1))})
	}
	must(t, st.ApplyVersioned(ops))
	waitReady(t, st, dedupKey("a", "probe"))
	for i := range 2000 {
		app := []string{"a", "b\x00c"}[i%2]
		if !found(t, st, dedupKey(app, fmt.Sprint("dt", i))) {
			t.Fatalf("key %d written, reported absent", i)
		}
	}
	before := st.absent.absent.Load()
	for i := range 2000 {
		if found(t, st, dedupKey("a", fmt.Sprint("never", i))) {
			t.Fatalf("key never written found")
		}
	}
	if n := st.absent.absent.Load() - before; n < 1900 {
		t.Fatalf("%d of 2000 absent keys answered by the filter, want at least 1900", n)
	}
	// Keys of other families are never answered by the filter.
	before = st.absent.absent.Load()
	if found(t, st, NewKey(3, "a", FamConv).Str("none").Bytes()) || st.absent.absent.Load() != before {
		t.Fatal("a conversation key was answered by the absence filter")
	}
}

// TestStoreAbsentFedByEveryWriter makes shard 3's filter ready, writes a
// de-duplication key through each write path of the store and reads it:
// no path may leave the filter answering that the key is absent.
func TestStoreAbsentFedByEveryWriter(t *testing.T) {
	key := dedupKey("app", "dt-1")
	other := dedupKey("app", "dt-2")
	tests := []struct {
		name  string
		write func(t *testing.T, st *Store)
	}{
		{"engine commit at W=1 (CommitUnpended)", func(t *testing.T, st *Store) {
			must(t, st.CommitUnpended(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}}))
		}},
		{"pending commit (CommitPending)", func(t *testing.T, st *Store) {
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}}))
			if ok, err := st.CommitPending(3, 1, 20); err != nil || !ok {
				t.Fatalf("CommitPending = %v, %v", ok, err)
			}
		}},
		{"commit notice riding on the next Prepare", func(t *testing.T, st *Store) {
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}}))
			must(t, st.PutPending(3, PendingWrite{Epoch: 1, ID: 21, Ops: []Op{{Kind: OpSet, Key: other, Value: dedupRec(21)}}},
				PendingID{Shard: 3, Epoch: 1, ID: 20}))
		}},
		{"roll-forward (CommitWrite)", func(t *testing.T, st *Store) {
			must(t, st.CommitWrite(3, PendingWrite{Epoch: 1, ID: 20, Ops: []Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}}))
		}},
		{"catch-up, repair, anti-entropy (ApplyVersioned)", func(t *testing.T, st *Store) {
			must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}))
		}},
		{"catch-up after the shard was deleted", func(t *testing.T, st *Store) {
			must(t, st.DeleteShard(3))
			must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}))
		}},
		{"plain commit", func(t *testing.T, st *Store) {
			b := st.NewBatch()
			b.Set(key, []byte("0123456789abcdefmid"))
			must(t, st.Commit(b))
		}},
		{"plain empty value", func(t *testing.T, st *Store) { must(t, st.Apply([]Op{{Kind: OpSet, Key: key}})) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openMem(t, vfs.NewMem())
			defer func() { _ = st.Close() }()
			waitReady(t, st, key)
			if found(t, st, key) || st.absent.absent.Load() == 0 {
				t.Fatal("the ready filter did not answer the absent key")
			}
			tt.write(t, st)
			if !found(t, st, key) {
				t.Fatal("key written, reported absent")
			}
		})
	}
}

// TestStoreAbsentBuildWaitsForCommits commits a key whose batch was read
// (and found no filter to feed) before a build registered its filter and
// reaches Pebble only after: the build must wait for that commit, so its
// scan sees the key.
func TestStoreAbsentBuildWaitsForCommits(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	key := dedupKey("app", "racing")
	inCommit, release := make(chan struct{}), make(chan struct{})
	st.testHookCommit = func() {
		st.testHookCommit = nil
		close(inCommit)
		<-release
	}
	committed := make(chan error, 1)
	go func() { committed <- st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}) }()
	<-inCommit
	// The commit is between its feed and Pebble: start the build and let
	// the commit go once the build is either done (it did not wait) or
	// waiting for the commit.
	_, _ = st.Get(dedupKey("app", "probe"))
	deadline := time.Now().Add(10 * time.Second)
	for !buildDone(st) && !buildWaiting() {
		if time.Now().After(deadline) {
			t.Fatal("the build neither finished nor waited within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	must(t, <-committed)
	waitReady(t, st, dedupKey("app", "probe"))
	if !found(t, st, key) {
		t.Fatal("a key committed while the filter was built is reported absent")
	}
}

func buildDone(st *Store) bool {
	st.absent.mu.Lock()
	defer st.absent.mu.Unlock()
	sh := st.absent.shards[3]
	return sh != nil && sh.ready != nil
}

// buildWaiting reports whether the builder waits for commitMu.
func buildWaiting() bool {
	buf := make([]byte, 1<<20)
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "(*absentFilter).build") && strings.Contains(g, "(*RWMutex).Lock") {
			return true
		}
	}
	return false
}

// TestStoreAbsentCommitDuringBuild commits a key while a build scans (its
// iterator does not see the key): the filter learns it from the commit.
func TestStoreAbsentCommitDuringBuild(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: dedupKey("app", "before"), Value: dedupRec(10)}}))
	key := dedupKey("app", "during")
	st.absent.testHookBuild = func() {
		st.absent.testHookBuild = nil
		must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: key, Value: dedupRec(20)}}))
	}
	waitReady(t, st, dedupKey("app", "probe"))
	if !found(t, st, key) {
		t.Fatal("a key committed during the build is reported absent")
	}
}

// TestStoreAbsentMemoryBound fills a shard past the filters' bound: the
// filter is dropped (its lookups read Pebble and find every key), the
// filters never hold more than the bound, and once retention deleted most
// keys the shard's filter is built again within the bound.
func TestStoreAbsentMemoryBound(t *testing.T) {
	first := int64(layerBlocks(bloomFirstKeys)) * 32
	limit := first + 2*first // two layers: 3 * 4096 keys
	st, err := Open(Config{Dir: "/db", FS: vfs.NewMem(), AbsentFilterSize: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	now := time.Now()
	st.absent.mu.Lock()
	st.absent.now = func() time.Time { return now }
	st.absent.mu.Unlock()
	waitReady(t, st, dedupKey("app", "probe"))
	const n = 20000
	for i := 0; i < n; i += 500 {
		var ops []Op
		for j := i; j < i+500; j++ {
			ops = append(ops, Op{Kind: OpSet, Key: dedupKey("app", fmt.Sprint("dt", j)), Value: []byte("0123456789abcdefmid")})
		}
		must(t, st.Apply(ops))
		if used := st.absent.usedBytes.Load(); used > limit {
			t.Fatalf("filters hold %d bytes, bound %d", used, limit)
		}
	}
	if st.absent.dropped.Load() != 1 || st.absent.usedBytes.Load() != 0 {
		t.Fatalf("dropped %d filters, %d bytes held; want 1, 0", st.absent.dropped.Load(), st.absent.usedBytes.Load())
	}
	before := st.absent.absent.Load()
	for i := range n {
		if !found(t, st, dedupKey("app", fmt.Sprint("dt", i))) {
			t.Fatalf("key %d reported absent after the filter was dropped", i)
		}
	}
	if st.absent.absent.Load() != before {
		t.Fatalf("%d lookups answered by a dropped filter", st.absent.absent.Load()-before)
	}
	// Retention deletes 3/4 of the keys; rebuildDelay later the shard is
	// built again.
	for i := 0; i < n*3/4; i += 500 {
		var ops []Op
		for j := i; j < i+500; j++ {
			ops = append(ops, Op{Kind: OpDelete, Key: dedupKey("app", fmt.Sprint("dt", j))})
		}
		must(t, st.Apply(ops))
	}
	_, _ = st.Get(dedupKey("app", "probe"))
	if buildDone(st) {
		t.Fatal("rebuilt before rebuildDelay")
	}
	st.absent.mu.Lock()
	now = now.Add(rebuildDelay)
	st.absent.mu.Unlock()
	waitReady(t, st, dedupKey("app", "probe"))
	if used := st.absent.usedBytes.Load(); used == 0 || used > limit {
		t.Fatalf("rebuilt filter holds %d bytes, bound %d", used, limit)
	}
	for i := n * 3 / 4; i < n; i++ {
		if !found(t, st, dedupKey("app", fmt.Sprint("dt", i))) {
			t.Fatalf("key %d reported absent after the rebuild", i)
		}
	}
}

// TestStoreAbsentRestartRebuilds reopens a store: its filters are built
// again from the keys on disk.
func TestStoreAbsentRestartRebuilds(t *testing.T) {
	fs := vfs.NewMem()
	st := openMem(t, fs)
	for i := range 100 {
		must(t, st.ApplyVersioned([]Op{{Kind: OpSet, Key: dedupKey("app", fmt.Sprint("dt", i)), Value: dedupRec(uint64(i + 1))}}))
	}
	must(t, st.Close())
	st = openMem(t, fs)
	defer func() { _ = st.Close() }()
	if found(t, st, dedupKey("app", "probe")) || st.absent.notReady.Load() != 1 {
		t.Fatal("the first lookup after the restart was not a fallback to Pebble")
	}
	waitReady(t, st, dedupKey("app", "probe"))
	for i := range 100 {
		if !found(t, st, dedupKey("app", fmt.Sprint("dt", i))) {
			t.Fatalf("key %d reported absent after the restart", i)
		}
	}
	if found(t, st, dedupKey("app", "never")) || st.absent.absent.Load() == 0 {
		t.Fatal("the rebuilt filter did not answer an absent key")
	}
}

// TestStoreAbsentLeavesOutOldTombstones builds a filter over tombstones: one
// older than tombstoneMargin is left out (answered absent), a recent one
// is kept (read from Pebble, whose version its reader observes).
func TestStoreAbsentLeavesOutOldTombstones(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	margin := uint64(tombstoneMargin/time.Millisecond) << versionLogicalBits
	old, recent := dedupKey("app", "old"), dedupKey("app", "recent")
	must(t, st.ApplyVersioned([]Op{
		{Kind: OpSet, Key: old, Value: EncodeVersioned(nowVersion(st)-2*margin, true, nil)},
		{Kind: OpSet, Key: recent, Value: EncodeVersioned(nowVersion(st), true, nil)},
	}))
	waitReady(t, st, dedupKey("app", "probe"))
	before := st.absent.absent.Load()
	if !found(t, st, recent) {
		t.Fatal("recent tombstone not read from Pebble")
	}
	if st.absent.absent.Load() != before {
		t.Fatal("a recent tombstone was answered by the filter")
	}
	if found(t, st, old) || st.absent.absent.Load() != before+1 {
		t.Fatal("an old tombstone was not answered by the filter")
	}
}

// BenchmarkStoreGetDedupMiss looks up absent de-duplication keys on a store
// holding 20,000 of them in tables, with and without the absence filter.
func BenchmarkStoreGetDedupMiss(b *testing.B) {
	for _, size := range []int64{-1, 0} {
		name := map[int64]string{-1: "pebble", 0: "filter"}[size]
		b.Run(name, func(b *testing.B) {
			st, err := Open(Config{Dir: "/db", FS: vfs.NewMem(), AbsentFilterSize: size})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			for i := 0; i < 20000; i += 1000 {
				var ops []Op
				for j := i; j < i+1000; j++ {
					ops = append(ops, Op{Kind: OpSet, Key: dedupKey("app", fmt.Sprint("dt", j)), Value: dedupRec(uint64(j + 1))})
				}
				if err := st.ApplyVersioned(ops); err != nil {
					b.Fatal(err)
				}
			}
			if err := st.db.Flush(); err != nil {
				b.Fatal(err)
			}
			if st.absent != nil {
				deadline := time.Now().Add(10 * time.Second)
				for !buildDone(st) && time.Now().Before(deadline) {
					_, _ = st.Get(dedupKey("app", "probe"))
					time.Sleep(time.Millisecond)
				}
			}
			keys := make([][]byte, 1024)
			for i := range keys {
				keys[i] = dedupKey("app", fmt.Sprint("miss", i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := st.Get(keys[i%len(keys)]); !errors.Is(err, ErrNotFound) {
					b.Fatal(err)
				}
			}
		})
	}
}
