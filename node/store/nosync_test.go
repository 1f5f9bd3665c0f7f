package store

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStoreNoSyncFlushed: a write without an fsync of its own is synced by
// the flusher within its delay, so a crash after that keeps it; and one the
// flusher had yet to sync survives Close (Pebble syncs its log when it
// closes, which the flusher relies on).
func TestStoreNoSyncFlushed(t *testing.T) {
	key := NewKey(3, "app", FamClientState).Str("Jerry").Str("conv").Bytes()
	kept := func(fs *vfs.MemFS) error {
		st, err := Open(Config{Dir: "/db", FS: fs.CrashClone(vfs.CrashCloneCfg{}), NoSyncFlushDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = st.Close() }()
		if _, err := st.Get(key); err != nil {
			return err
		}
		return nil
	}
	write := func(st *Store) {
		b := st.NewBatch()
		b.Set(key, []byte("acked"))
		b.SetNoSync()
		if err := st.Commit(b); err != nil {
			t.Fatal(err)
		}
	}

	fs := vfs.NewCrashableMem()
	st, err := Open(Config{Dir: "/db", FS: fs, NoSyncFlushDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	write(st)
	deadline := time.Now().Add(10 * time.Second)
	for err := kept(fs); err != nil; err = kept(fs) {
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("an unsynced write still not synced after %v: %v", 10*time.Second, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	fs = vfs.NewCrashableMem()
	closing, err := Open(Config{Dir: "/db", FS: fs, NoSyncFlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	write(closing)
	if err := closing.Close(); err != nil {
		t.Fatal(err)
	}
	if err := kept(fs); err != nil {
		t.Fatalf("an unsynced write lost although the store was closed: %v", err)
	}
}
