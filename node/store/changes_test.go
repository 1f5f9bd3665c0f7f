package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func openChangeTestStore(t *testing.T, fs vfs.FS, dir string) *Store {
	t.Helper()
	st, err := Open(Config{Dir: dir, FS: fs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// changedKeys returns the keys of shard's change-log entries after from,
// up to the head, in log order.
func changedKeys(t *testing.T, st *Store, shard uint16, from ChangeCursor) []string {
	t.Helper()
	var out []string
	err := st.ScanChanges(shard, from, st.ChangeHead().Seq, func(_ uint64, keys [][]byte) (bool, error) {
		for _, k := range keys {
			out = append(out, string(k))
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verOp(shard uint16, name string, version uint64) Op {
	return Op{Kind: OpSet, Key: NewKey(shard, "app", FamMsg).Str("c").Str(name).Bytes(),
		Value: EncodeVersioned(version, false, []byte(name))}
}

// Every path that makes replicated records visible logs their keys in the
// same batch: a coordinator's commit (synced or not), a replica's commit
// of a pending write (alone or riding on the next pending write's batch), a
// roll-forward and a sync page. Pending writes,
// plain batches and deletions log nothing.
func TestChangeLogRecordsEveryCommitPath(t *testing.T) {
	st := openChangeTestStore(t, vfs.NewMem(), "db")
	defer func() { _ = st.Close() }()
	start := st.ChangeHead()
	if start.Incarnation == 0 || start.Seq != 0 {
		t.Fatalf("a new store's head is %+v", start)
	}
	key := func(name string) string { return string(verOp(7, name, 1).Key) }

	w1 := PendingWrite{Epoch: 1, ID: 10, Ops: []Op{verOp(7, "sync", 10)}}
	if err := st.CommitWrite(7, w1); err != nil {
		t.Fatal(err)
	}
	w2 := PendingWrite{Epoch: 1, ID: 11, Ops: []Op{verOp(7, "nosync", 11)}}
	if err := st.CommitWriteNoSync(7, w2); err != nil {
		t.Fatal(err)
	}
	w3 := PendingWrite{Epoch: 1, ID: 12, Ops: []Op{verOp(7, "notice", 12), verOp(7, "notice2", 12)}}
	if err := st.PutPending(7, w3); err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(t, st, 7, start); len(got) != 2 {
		t.Fatalf("a pending write is logged: %q", got)
	}
	if ok, err := st.CommitPending(7, 1, 12); !ok || err != nil {
		t.Fatalf("CommitPending = %v, %v", ok, err)
	}
	// A commit riding on the next pending write's batch.
	w4 := PendingWrite{Epoch: 1, ID: 14, Ops: []Op{verOp(7, "riding", 14)}}
	if err := st.PutPending(7, w4); err != nil {
		t.Fatal(err)
	}
	if err := st.PutPending(7, PendingWrite{Epoch: 1, ID: 15, Ops: []Op{verOp(7, "next", 15)}}, PendingID{Shard: 7, Epoch: 1, ID: 14}); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyVersioned([]Op{verOp(7, "page", 13), verOp(8, "other", 13)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply([]Op{{Kind: OpSet, Key: verOp(7, "plain", 1).Key, Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyVersioned([]Op{{Kind: OpDelete, Key: verOp(7, "page", 1).Key}}); err != nil {
		t.Fatal(err)
	}
	want := []string{key("sync"), key("nosync"), key("notice"), key("notice2"), key("riding"), key("page")}
	if got := changedKeys(t, st, 7, start); !slices.Equal(got, want) {
		t.Fatalf("shard 7 logged %q, want %q", got, want)
	}
	if got := changedKeys(t, st, 8, start); !slices.Equal(got, []string{string(verOp(8, "other", 1).Key)}) {
		t.Fatalf("shard 8 logged %q", got)
	}
	// After a cursor: only what came later.
	mid := st.ChangeHead()
	if err := st.CommitWrite(7, PendingWrite{Epoch: 2, ID: 20, Ops: []Op{verOp(7, "later", 20)}}); err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(t, st, 7, mid); !slices.Equal(got, []string{key("later")}) {
		t.Fatalf("after %+v: %q", mid, got)
	}
	// No shard scan sees the log.
	n := 0
	if err := st.ScanShard(7, func(k, v []byte) (bool, error) { n++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	if n != 7 { // sync, nosync, notice, notice2, riding, later and the plain key; "page" was deleted
		t.Fatalf("shard 7 scan sees %d keys", n)
	}
}

// The head stays below a batch still being committed: a cursor taken then
// must not skip it when it commits after later batches.
func TestChangeHeadWaitsForBatchesInFlight(t *testing.T) {
	st := openChangeTestStore(t, vfs.NewMem(), "db")
	defer func() { _ = st.Close() }()
	tk, err := st.logChanges([]Op{verOp(7, "slow", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitWrite(7, PendingWrite{Epoch: 1, ID: 2, Ops: []Op{verOp(7, "fast", 2)}}); err != nil {
		t.Fatal(err)
	}
	if h := st.ChangeHead().Seq; h != 0 {
		t.Fatalf("head %d passes the batch in flight (seq 1)", h)
	}
	tk.commit()
	tk.done()
	if h := st.ChangeHead().Seq; h != 2 {
		t.Fatalf("head %d after both committed, want 2", h)
	}
	// The late entry is read in seq order, before the later batch's.
	want := []string{string(verOp(7, "slow", 1).Key), string(verOp(7, "fast", 2).Key)}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: st.ChangeHead().Incarnation}); !slices.Equal(got, want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
}

// A cursor of an earlier run, or one the trimmed log no longer reaches,
// is refused (the caller compares digests); a deleted shard's log is gone.
func TestChangeLogTrimAndRestart(t *testing.T) {
	fs := vfs.NewMem()
	st := openChangeTestStore(t, fs, "db")
	for i := range 10 {
		if err := st.ApplyVersioned([]Op{verOp(7, string(rune('a'+i)), uint64(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	old := ChangeCursor{Incarnation: st.ChangeHead().Incarnation, Seq: 2}
	now := time.Now()
	if through, err := st.TrimChanges(now, time.Hour, 100); err != nil || through != 0 {
		t.Fatalf("trim within the bounds dropped through %d, %v", through, err)
	}
	if got := changedKeys(t, st, 7, old); len(got) != 8 {
		t.Fatalf("%d keys after seq 2, want 8", len(got))
	}
	// By entries: keep the last 5 batches.
	if through, err := st.TrimChanges(now, time.Hour, 5); err != nil || through != 5 {
		t.Fatalf("trim to 5 entries dropped through %d, %v", through, err)
	}
	err := st.ScanChanges(7, old, st.ChangeHead().Seq, func(uint64, [][]byte) (bool, error) { return true, nil })
	if !errors.Is(err, ErrChangesTrimmed) {
		t.Fatalf("scan from a trimmed cursor: %v", err)
	}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: old.Incarnation, Seq: 5}); len(got) != 5 {
		t.Fatalf("%d keys after the trimmed seq, want 5", len(got))
	}
	if n := st.changes.entries; n != 5 {
		t.Fatalf("%d entries held after the trim, want 5", n)
	}
	// By age: the head sampled an hour ago goes.
	if through, err := st.TrimChanges(now.Add(time.Hour), time.Hour, 100); err != nil || through != 10 {
		t.Fatalf("trim by age dropped through %d, %v", through, err)
	}
	if b, n := st.changes.bytes, st.changes.entries; b != 0 || n != 0 {
		t.Fatalf("the log holds %d bytes in %d entries after everything was trimmed", b, n)
	}
	// DeleteShard drops the shard's log.
	if err := st.ApplyVersioned([]Op{verOp(7, "k", 20)}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteShard(7); err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: old.Incarnation, Seq: 10}); len(got) != 0 {
		t.Fatalf("a deleted shard keeps its log: %q", got)
	}
	// A restart discards the log and the cursors into it.
	if err := st.ApplyVersioned([]Op{verOp(7, "before-restart", 30)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openChangeTestStore(t, fs, "db")
	defer func() { _ = st.Close() }()
	h := st.ChangeHead()
	if h.Incarnation == old.Incarnation || h.Seq != 0 {
		t.Fatalf("head after a restart %+v (before: incarnation %d)", h, old.Incarnation)
	}
	err = st.ScanChanges(7, ChangeCursor{Incarnation: old.Incarnation, Seq: 11}, 0, func(uint64, [][]byte) (bool, error) { return true, nil })
	if !errors.Is(err, ErrChangesTrimmed) {
		t.Fatalf("scan from an earlier run's cursor: %v", err)
	}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: h.Incarnation}); len(got) != 0 {
		t.Fatalf("an earlier run's entries survive the restart: %q", got)
	}
}

// The log's memory is bounded: past maxBytes the oldest chunks go at once,
// and a cursor below them is refused while a later one still reads every
// entry after it.
func TestChangeLogByteBound(t *testing.T) {
	st := openChangeTestStore(t, vfs.NewMem(), "db")
	defer func() { _ = st.Close() }()
	inc := st.ChangeHead().Incarnation
	st.changes.chunkSize = 1 // a chunk per entry
	st.changes.maxBytes = 600
	name := func(i int) string { return string(rune('a' + i)) }
	for i := range 10 {
		if err := st.ApplyVersioned([]Op{verOp(7, name(i), uint64(i+1))}); err != nil {
			t.Fatal(err)
		}
		if b := st.changes.bytes; b > st.changes.maxBytes {
			t.Fatalf("after %d batches the log holds %d bytes, over its bound %d", i+1, b, st.changes.maxBytes)
		}
	}
	trimmed := st.changes.trimmed
	if trimmed == 0 || trimmed >= 9 {
		t.Fatalf("the bound dropped through seq %d of 10", trimmed)
	}
	err := st.ScanChanges(7, ChangeCursor{Incarnation: inc}, st.ChangeHead().Seq, func(uint64, [][]byte) (bool, error) { return true, nil })
	if !errors.Is(err, ErrChangesTrimmed) {
		t.Fatalf("scan from before the dropped entries: %v", err)
	}
	var want []string
	for i := int(trimmed); i < 10; i++ {
		want = append(want, string(verOp(7, name(i), 1).Key))
	}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: inc, Seq: trimmed}); !slices.Equal(got, want) {
		t.Fatalf("after seq %d: %q, want %q", trimmed, got, want)
	}
	if changed, err := st.ChangedSince(7, ChangeCursor{Incarnation: inc}); err != nil || !changed {
		t.Fatalf("ChangedSince a dropped cursor = %v, %v", changed, err)
	}
}

// logEntries writes n batches of one key each to shard 7 (the key of
// batch seq named seq-1) and returns the head after them.
func logEntries(t *testing.T, st *Store, n int) ChangeCursor {
	t.Helper()
	for i := range n {
		if err := st.ApplyVersioned([]Op{verOp(7, fmt.Sprint(i), uint64(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	return st.ChangeHead()
}

// A trim while a scan runs (between the chunks it copies) ends the scan
// with ErrChangesTrimmed instead of skipping the dropped entries.
func TestChangeLogTrimDuringScan(t *testing.T) {
	st := openChangeTestStore(t, vfs.NewMem(), "db")
	defer func() { _ = st.Close() }()
	const n = 3 * changeScanChunk
	head := logEntries(t, st, n)
	read := 0
	err := st.ScanChanges(7, ChangeCursor{Incarnation: head.Incarnation}, head.Seq, func(seq uint64, _ [][]byte) (bool, error) {
		read++
		if seq == changeScanChunk/2 {
			if _, err := st.TrimChanges(time.Now(), time.Hour, n/2); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if !errors.Is(err, ErrChangesTrimmed) {
		t.Fatalf("scan across a trim read %d entries and returned %v", read, err)
	}
}

// A store closed while a scan runs frees the log's memory: the scan reads
// only its own copy of the entries it took and then ends with
// ErrChangesTrimmed, as does a scan after the close.
func TestChangeLogCloseDuringScan(t *testing.T) {
	st := openChangeTestStore(t, vfs.NewMem(), "db")
	const n = 2 * changeScanChunk
	head := logEntries(t, st, n)
	read := 0
	err := st.ScanChanges(7, ChangeCursor{Incarnation: head.Incarnation}, head.Seq, func(seq uint64, keys [][]byte) (bool, error) {
		if want := string(verOp(7, fmt.Sprint(seq-1), 1).Key); len(keys) != 1 || string(keys[0]) != want {
			return false, fmt.Errorf("entry %d lists %q, want %q", seq, keys, want)
		}
		read++
		if read == 1 {
			if err := st.Close(); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if !errors.Is(err, ErrChangesTrimmed) || read != changeScanChunk {
		t.Fatalf("scan across a close read %d entries and returned %v", read, err)
	}
	err = st.ScanChanges(7, ChangeCursor{Incarnation: head.Incarnation}, head.Seq, func(uint64, [][]byte) (bool, error) { return true, nil })
	if !errors.Is(err, ErrChangesTrimmed) {
		t.Fatalf("scan after the close: %v", err)
	}
}

// An entry's keys come back whole, whatever prefixes they share.
func TestChangeKeysRoundTrip(t *testing.T) {
	keys := [][]byte{
		NewKey(9, "app", FamMsg).Str("conv").Int64(5).Str("m1").Bytes(),
		NewKey(9, "app", FamMsgID).Str("conv").Str("m1").Bytes(),
		NewKey(9, "app", FamMsgID).Str("conv").Str("m1").Bytes(), // the same again
		NewKey(9, "app", FamMsgID).Str("conv").Bytes(),           // a prefix of the one before
		NewKey(9, "app", FamMsgID).Str("conv").Str("m1").Bytes(), // and longer again
		{0, 9}, // the shard alone
		NewKey(9, "other", FamDedup).Str("x").Bytes(),
	}
	var enc, prev []byte
	for _, k := range keys {
		enc, prev = appendChangeKey(enc, prev, k[2:]), k[2:]
	}
	_, got, err := decodeChangeKeys(9, enc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, keys, bytes.Equal) {
		t.Fatalf("decoded %q, want %q", got, keys)
	}
	if _, _, err := decodeChangeKeys(9, enc[:len(enc)-1], nil, nil); !errors.Is(err, ErrCorruptValue) {
		t.Fatalf("a cut entry decodes: %v", err)
	}
}

// The log is not written to Pebble, and what an earlier build left there
// is deleted when the store opens.
func TestChangeLogNotStored(t *testing.T) {
	fs := vfs.NewMem()
	st := openChangeTestStore(t, fs, "db")
	old := append(bytes.Clone(changePrefix), 0, 7, 0, 0, 0, 0, 0, 0, 0, 1)
	if err := st.db.Set(old, []byte("keys"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openChangeTestStore(t, fs, "db")
	defer func() { _ = st.Close() }()
	if err := st.CommitWrite(7, PendingWrite{Epoch: 1, ID: 1, Ops: []Op{verOp(7, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(t, st, 7, ChangeCursor{Incarnation: st.ChangeHead().Incarnation}); len(got) != 1 {
		t.Fatalf("logged %q", got)
	}
	n := 0
	if err := st.Scan(changePrefix, PrefixEnd(changePrefix), false, func(k, v []byte) (bool, error) { n++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d change-log keys in Pebble", n)
	}
}

// BenchmarkChangeLog compares a replica's commit of a pending write
// (CommitWriteNoSync, what the coordinator and the commit notices do, on
// an in-memory filesystem so the disk does not drown the difference) with
// and without its change-log entry.
func BenchmarkChangeLog(b *testing.B) {
	for _, logged := range []bool{false, true} {
		name := "without-log"
		if logged {
			name = "with-log"
		}
		b.Run(name, func(b *testing.B) {
			st, err := Open(Config{Dir: "db", FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			b.ReportAllocs()
			for i := range b.N {
				w := PendingWrite{Epoch: 1, ID: uint64(i + 1), Ops: benchWrite(i)}
				if logged {
					if err := st.CommitWriteNoSync(7, w); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if err := st.commitWriteUnlogged(7, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// commitWriteUnlogged is commitWrite as it was before the change log: the
// benchmark's peer.
func (s *Store) commitWriteUnlogged(shard uint16, w PendingWrite) error {
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	if err := addOps(pb, w.Ops, true); err != nil {
		return err
	}
	if err := pb.Delete(pendingKey(shard, w.Epoch, w.ID), nil); err != nil {
		return err
	}
	return pb.Commit(pebble.NoSync)
}
