package store

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// purgeClock is a settable clock for tombstone expiry.
type purgeClock struct{ ms atomic.Int64 }

func (c *purgeClock) now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *purgeClock) set(t time.Time)     { c.ms.Store(t.UnixMilli()) }
func (c *purgeClock) add(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// purgeKey is an order index entry of shard 7, the family that deletes one
// per message.
func purgeKey(i int64) []byte {
	return NewKey(7, "app", FamOrder).Str("lm").Int64(i).Str("conv").Bytes()
}

func purgeRecord(i int64, at time.Time, tomb bool) Op {
	return Op{Kind: OpSet, Key: purgeKey(i), Value: EncodeVersioned(versionOf(at), tomb, []byte("entry"))}
}

// openPurge opens a store with clock c.
func openPurge(t *testing.T, c *purgeClock) *Store {
	t.Helper()
	s, err := Open(Config{Dir: "/db", FS: vfs.NewMem(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mustPurge runs PurgeShard on shard 7 after key after and checks it
// deleted want tombstones and whether it stopped before the shard's end;
// it returns where to go on.
func mustPurge(t *testing.T, s *Store, after []byte, want int, wantMore bool) []byte {
	t.Helper()
	n, next, err := s.PurgeShard(7, after)
	if err != nil || n != want || (next != nil) != wantMore {
		t.Fatalf("PurgeShard = %d, %x, %v; want %d, more %v", n, next, err, want, wantMore)
	}
	return next
}

// Tombstones are deleted once past the grace, not before; values and
// younger tombstones stay. A deleted tombstone no longer shadows an older
// record that arrives afterwards: the documented cost of the grace (a
// replica away for longer must be rebuilt), and the proof it is gone.
func TestStorePurgeShardAfterGrace(t *testing.T) {
	var c purgeClock
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.set(t0)
	s := openPurge(t, &c)
	ops := []Op{purgeRecord(1, t0, false), purgeRecord(1, t0.Add(time.Second), true), purgeRecord(2, t0, false)}
	if err := s.ApplyVersioned(ops); err != nil {
		t.Fatal(err)
	}
	c.add(RecordTombstoneGrace - time.Minute)
	if err := s.ApplyVersioned([]Op{purgeRecord(3, c.now(), true)}); err != nil {
		t.Fatal(err)
	}
	mustPurge(t, s, nil, 0, false)
	if v, err := s.Get(purgeKey(1)); err != nil || v[0] != VersionTombstone {
		t.Fatalf("Get within the grace = %x, %v; want the tombstone", v, err)
	}

	c.add(2 * time.Minute)
	mustPurge(t, s, nil, 1, false)
	if _, err := s.Get(purgeKey(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a purged tombstone = %v, want not found", err)
	}
	for _, i := range []int64{2, 3} {
		if _, err := s.Get(purgeKey(i)); err != nil {
			t.Fatalf("Get(%d) after the purge: %v; want it kept", i, err)
		}
	}
	mustPurge(t, s, nil, 0, false)
	late := purgeRecord(1, t0.Add(500*time.Millisecond), false)
	if err := s.ApplyVersioned([]Op{late}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(purgeKey(1)); err != nil || string(v) != string(late.Value) {
		t.Fatalf("Get after the purge = %x, %v; want the late record", v, err)
	}
}

// A shard with more expired tombstones than one batch reports where to go
// on, and a call from there takes the rest.
func TestStorePurgeShardBatches(t *testing.T) {
	var c purgeClock
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.set(t0)
	s := openPurge(t, &c)
	var ops []Op
	for i := range PurgeBatch + 10 {
		ops = append(ops, purgeRecord(int64(i), t0, true))
	}
	if err := s.ApplyVersioned(ops); err != nil {
		t.Fatal(err)
	}
	c.add(RecordTombstoneGrace + time.Minute)
	next := mustPurge(t, s, nil, PurgeBatch, true)
	// A position in another shard (the shards this node replicates changed
	// between rounds) starts that shard from its beginning: shard 8 has
	// nothing to purge, and shard 7's rest is not touched from there.
	if n, more, err := s.PurgeShard(8, next); err != nil || n != 0 || more != nil {
		t.Fatalf("PurgeShard(8) after a key of shard 7 = %d, %x, %v; want nothing", n, more, err)
	}
	mustPurge(t, s, next, 10, false)
	mustPurge(t, s, nil, 0, false)
}

// A write of a key committed while PurgeShard deletes its tombstone waits
// for the purge and is kept: without purgeMu it would commit between the
// purge's check and its delete, and the delete would remove it.
func TestStorePurgeShardKeepsConcurrentWrite(t *testing.T) {
	var c purgeClock
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.set(t0)
	s := openPurge(t, &c)
	if err := s.ApplyVersioned([]Op{purgeRecord(1, t0, true)}); err != nil {
		t.Fatal(err)
	}
	c.add(RecordTombstoneGrace + time.Minute)
	newer := purgeRecord(1, c.now(), false)
	done := make(chan error, 1)
	s.testHookPurge = func() {
		s.testHookPurge = nil
		go func() { done <- s.ApplyVersioned([]Op{newer}) }()
		// The write must not finish while the purge holds the store; give
		// it the time it would need if it could.
		select {
		case err := <-done:
			t.Errorf("a write committed during the purge (err %v)", err)
			done <- err
		case <-time.After(200 * time.Millisecond):
		}
	}
	mustPurge(t, s, nil, 1, false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(purgeKey(1)); err != nil || string(v) != string(newer.Value) {
		t.Fatalf("Get after the purge and the write = %x, %v; want the write", v, err)
	}
}

// Range digests leave out tombstones older than the horizon (the grace less
// the clock margin), which one replica may have purged and another not: two
// replicas that differ only by such a tombstone compare equal, so
// anti-entropy does not copy it back. A younger tombstone still counts.
func TestStoreDigestLeavesOutPurgeableTombstones(t *testing.T) {
	var c purgeClock
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c.set(now)
	cutoff := versionOf(now.Add(-time.Second))
	shared := Op{Kind: OpSet, Key: NewKey(7, "app", FamMsg).Str("c").Int64(1).Bytes(),
		Value: EncodeVersioned(versionOf(now.Add(-time.Hour)), false, []byte("m"))}
	near := purgeRecord(1, now.Add(-RecordTombstoneGrace+digestClockMargin/2), true) // not expired, below the horizon
	a, b := openPurge(t, &c), openPurge(t, &c)
	if err := a.ApplyVersioned([]Op{shared, near}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyVersioned([]Op{shared}); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(near.Key); err != nil || v[0] != VersionTombstone {
		t.Fatalf("the tombstone within the grace reads %x, %v", v, err)
	}
	da, db := mustRangeDigest(t, a, 7, cutoff), mustRangeDigest(t, b, 7, cutoff)
	if da.Summary() != db.Summary() || da.Keys(AllBuckets) != 1 {
		t.Fatalf("range digests with a tombstone below the horizon differ: %d vs %d keys", da.Keys(AllBuckets), db.Keys(AllBuckets))
	}
	ha, na, err := a.ShardDigestUpTo(7, cutoff)
	hb, nb, err2 := b.ShardDigestUpTo(7, cutoff)
	if err != nil || err2 != nil || ha != hb || na != nb {
		t.Fatalf("digests with a tombstone below the horizon differ: (%x, %d) vs (%x, %d), %v, %v", ha, na, hb, nb, err, err2)
	}

	recent := purgeRecord(2, now.Add(-24*time.Hour), true)
	if err := a.ApplyVersioned([]Op{recent}); err != nil {
		t.Fatal(err)
	}
	if da, db := mustRangeDigest(t, a, 7, cutoff), mustRangeDigest(t, b, 7, cutoff); da.Summary() == db.Summary() {
		t.Fatal("a tombstone younger than the horizon is left out of the range digest")
	}
}
