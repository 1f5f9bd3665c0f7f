package store

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func openBenchStore(b *testing.B) *Store {
	b.Helper()
	st, err := Open(Config{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// benchWrite returns the ops of a message-sized write (message, id index,
// dedup record) of shard 7.
func benchWrite(i int) []Op {
	k := func(fam Family, s string) []byte { return NewKey(7, "app", fam).Str("conv").Str(s).Bytes() }
	v := EncodeVersioned(uint64(i+1)<<16, false, make([]byte, 200))
	return []Op{
		{Kind: OpSet, Key: k(FamMsg, fmt.Sprint(i)), Value: v},
		{Kind: OpSet, Key: k(FamMsgID, fmt.Sprint(i)), Value: EncodeVersioned(uint64(i+1)<<16, false, []byte("12345678"))},
		{Kind: OpSet, Key: k(FamDedup, fmt.Sprint(i)), Value: EncodeVersioned(uint64(i+1)<<16, false, []byte("mid"))},
	}
}

// BenchmarkReplicatedWrite compares what one replica does per write: the
// visible write alone (before pending writes), the synced visible write
// of a coordinator that meets its quorum alone (unpended), pending then a synced
// commit, and pending then a commit that is not synced (what the
// coordinator and the commit notices do).
func BenchmarkReplicatedWrite(b *testing.B) {
	b.Run("visible-only", func(b *testing.B) {
		st := openBenchStore(b)
		for i := range b.N {
			if err := st.ApplyVersioned(benchWrite(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unpended", func(b *testing.B) {
		st := openBenchStore(b)
		for i := range b.N {
			if err := st.CommitUnpended(7, PendingWrite{Epoch: 1, ID: uint64(i + 1), Ops: benchWrite(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("pending+commit-sync=%v", sync), func(b *testing.B) {
			st := openBenchStore(b)
			for i := range b.N {
				w := PendingWrite{Epoch: 1, ID: uint64(i + 1), Ops: benchWrite(i)}
				if err := st.PutPending(7, w); err != nil {
					b.Fatal(err)
				}
				commit := st.CommitWriteNoSync
				if sync {
					commit = st.CommitWrite
				}
				if err := commit(7, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCommitUnpendedCrash: a write committed without a pending phase
// (CommitUnpended) is visible at once, stores no pending record, survives
// a crash right after it when synced, and is lost whole when NoSync.
func TestCommitUnpendedCrash(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		fs := vfs.NewCrashableMem()
		st, err := Open(Config{Dir: "/db", FS: fs, NoSyncFlushDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		ops := benchWrite(1)
		if err := st.CommitUnpended(7, PendingWrite{Epoch: 1, ID: 1, Ops: ops, NoSync: noSync}); err != nil {
			t.Fatal(err)
		}
		if pend, unpended := st.WriteCounts(); pend != 0 || unpended != 1 {
			t.Fatalf("WriteCounts = %d, %d; want 0 pending, 1 unpended", pend, unpended)
		}
		n := 0
		if err := st.ScanPending(7, 0, 0, func(PendingWrite, int) (bool, error) { n++; return true, nil }); err != nil || n != 0 {
			t.Fatalf("%d pending records (%v) after CommitUnpended; want none", n, err)
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		_ = st.Close()
		st, err = Open(Config{Dir: "/db", FS: clone, NoSyncFlushDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			_, err := st.Get(op.Key)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			if kept := err == nil; kept == noSync {
				t.Fatalf("NoSync %v: key %x kept after a crash = %v", noSync, op.Key, kept)
			}
		}
		_ = st.Close()
	}
}

// TestNoSyncWritesCrash: a crash loses what SetNoSync (and a NoSync pending
// write) committed after the last fsync, whole, and nothing synced: a
// synced commit made after a NoSync one syncs that one too.
func TestNoSyncWritesCrash(t *testing.T) {
	key := func(s string) []byte { return NewKey(7, "app", FamMsg).Str("conv").Str(s).Bytes() }
	commit := func(t *testing.T, st *Store, k string, noSync bool) {
		t.Helper()
		b := st.NewBatch()
		b.Set(key(k), []byte(k))
		if noSync {
			b.SetNoSync()
		}
		if err := st.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	// Without the flusher (nosync.go), which would sync them meanwhile.
	open := func(t *testing.T, fs vfs.FS) *Store {
		t.Helper()
		st, err := Open(Config{Dir: "/db", FS: fs, NoSyncFlushDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	crash := func(t *testing.T, fs *vfs.MemFS, st *Store) *Store {
		t.Helper()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		_ = st.Close()
		again := open(t, clone)
		t.Cleanup(func() { _ = again.Close() })
		return again
	}
	has := func(st *Store, k string) bool {
		_, err := st.Get(key(k))
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	pending := func(st *Store) int {
		n := 0
		if err := st.ScanPending(7, 0, 0, func(PendingWrite, int) (bool, error) { n++; return true, nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}

	fs := vfs.NewCrashableMem()
	st := open(t, fs)
	commit(t, st, "synced", false)
	commit(t, st, "lazy", true)
	if err := st.PutPending(7, PendingWrite{Epoch: 1, ID: 1, Ops: benchWrite(1), NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if !has(st, "lazy") || pending(st) != 1 {
		t.Fatal("NoSync writes not visible before the crash")
	}
	st = crash(t, fs, st)
	if !has(st, "synced") {
		t.Fatal("a synced write was lost in the crash")
	}
	if has(st, "lazy") || pending(st) != 0 {
		t.Fatalf("NoSync writes survived a crash right after them (lazy %v, %d pending): they were synced", has(st, "lazy"), pending(st))
	}

	fs = vfs.NewCrashableMem()
	st = open(t, fs)
	commit(t, st, "lazy", true)
	if err := st.PutPending(7, PendingWrite{Epoch: 1, ID: 1, Ops: benchWrite(1), NoSync: true}); err != nil {
		t.Fatal(err)
	}
	commit(t, st, "synced", false)
	st = crash(t, fs, st)
	if !has(st, "lazy") || !has(st, "synced") || pending(st) != 1 {
		t.Fatal("a synced commit did not sync the NoSync writes before it")
	}
}

// TestShardEpochCached: the recorded term read through the cache follows
// every write of it (a later term, an earlier one that must not lower it,
// the shard deleted) and survives a reopen from the store.
func TestShardEpochCached(t *testing.T) {
	fs := vfs.NewMem()
	st := openMem(t, fs)
	want := func(st *Store, shard uint16, e uint64) {
		t.Helper()
		if got, err := st.ShardEpoch(shard); err != nil || got != e {
			t.Fatalf("ShardEpoch(%d) = %d, %v; want %d", shard, got, err, e)
		}
	}
	want(st, 4, 0)
	if err := st.ResolveShard(4, 3); err != nil {
		t.Fatal(err)
	}
	want(st, 4, 3)
	if err := st.ResolveShard(4, 2); err != nil {
		t.Fatal(err)
	}
	want(st, 4, 3)
	if err := st.ResolveShard(5, 7); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteShard(4); err != nil {
		t.Fatal(err)
	}
	want(st, 4, 0)
	want(st, 5, 7)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openMem(t, fs)
	defer func() { _ = st.Close() }()
	want(st, 4, 0)
	want(st, 5, 7)
}

// TestPendingCommitKeptOps: a write committed by a later PutPending (a
// commit notice it carries) becomes visible and leaves no pending record,
// whether its ops are still kept in memory or read back; a write whose
// shard copy was deleted, or dropped by DropPendingUpTo, is not brought
// back by a late notice.
func TestPendingCommitKeptOps(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer func() { _ = st.Close() }()
	visible := func(i int) bool {
		_, err := st.Get(benchWrite(i)[0].Key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	pending := func() int {
		n := 0
		if err := st.ScanPending(7, 0, 0, func(PendingWrite, int) (bool, error) { n++; return true, nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	put := func(i int, committed ...PendingID) {
		t.Helper()
		if err := st.PutPending(7, PendingWrite{Epoch: 1, ID: uint64(i), Ops: benchWrite(i)}, committed...); err != nil {
			t.Fatal(err)
		}
	}
	id := func(i int) PendingID { return PendingID{Shard: 7, Epoch: 1, ID: uint64(i)} }

	put(1)
	put(2, id(1)) // kept in memory
	st.recent.take(id(2))
	put(3, id(2)) // read back from its record
	if !visible(1) || !visible(2) || visible(3) || pending() != 1 {
		t.Fatalf("after two commits: visible %v %v %v, %d pending; want 1 and 2 visible, 3 pending", visible(1), visible(2), visible(3), pending())
	}

	if err := st.DeleteShard(7); err != nil {
		t.Fatal(err)
	}
	put(5, id(3))
	if visible(3) {
		t.Fatal("a notice after the shard's deletion brought its write back")
	}
	if _, err := st.DropPendingUpTo(7, 5); err != nil {
		t.Fatal(err)
	}
	put(6, id(5))
	if visible(5) {
		t.Fatal("a notice after DropPendingUpTo brought the dropped write back")
	}
}
