package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Whole-record tombstones and their purge.
//
// A deleted replicated key keeps a whole-record tombstone (VersionTombstone)
// so that a late, older write of the key, arriving from a replica that
// missed the delete, loses to it. Without a purge every delete would keep
// its key and a 9-byte header for good, and some families delete on every
// message (the order index moves a conversation's lm entry per send; the
// sweeper deletes expired de-duplication keys). A tombstone older than
// RecordTombstoneGrace is therefore removed, by the same rule as a field
// tombstone (FieldTombstoneGrace): a replica away for longer than the grace
// may bring a deleted record back and must be rebuilt instead.
//
// Each replica purges its own store (PurgeShard, run by the replica set one
// shard at a time): it finds expired tombstones by a scan, then, holding
// purgeMu exclusively (every commit holds it shared), checks that each key
// still holds the tombstone it found and deletes those that do, without a
// trace. A write of such a key either committed before the check (the key
// no longer holds the tombstone, so it is kept) or commits after the delete
// (and merges onto nothing): the purge never removes a newer record. The
// exclusive hold waits for the commits in flight (at most about one WAL
// sync) and holds new ones for PurgeBatch point reads and one unsynced
// commit.
//
// Range digests leave out tombstones older than tombstoneHorizon, a bound
// below the expiry that two replicas compute alike from the digest's version
// cutoff: a tombstone one replica purged and another still holds makes no
// difference to anti-entropy, which would otherwise copy it back.

// RecordTombstoneGrace is how long a whole-record tombstone outlives its
// deletion (its version's wall-clock time) before it is purged.
const RecordTombstoneGrace = FieldTombstoneGrace

// digestClockMargin is how much younger than the grace a tombstone left out
// of range digests may be: replicas' clocks must agree within it (they agree
// within seconds for the hybrid-logical clocks anyway).
const digestClockMargin = time.Hour

// PurgeBatch bounds the expired tombstones one PurgeShard call deletes.
const PurgeBatch = 1024

// versionOf returns the version of wall-clock time t.
func versionOf(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) << versionLogicalBits
}

// tombstoneBefore reports whether the record v is a whole-record tombstone
// with a version below version.
func tombstoneBefore(v []byte, version uint64) bool {
	return len(v) >= versionHeader && v[0] == VersionTombstone && binary.BigEndian.Uint64(v[1:versionHeader]) < version
}

// tombstoneHorizon returns the version below which range digests with
// version cutoff leave tombstones out: the grace less the margin before the
// earlier of cutoff and now. Every tombstone at or above it is younger than
// the grace on any replica whose clock is within the margin, so no replica
// has purged it yet.
func tombstoneHorizon(cutoff uint64, now time.Time) uint64 {
	base := min(cutoff, versionOf(now))
	span := uint64((RecordTombstoneGrace - digestClockMargin).Milliseconds()) << versionLogicalBits
	if base < span {
		return 0
	}
	return base - span
}

// purgeMetrics counts PurgeShard's deletions.
type purgeMetrics struct {
	purged prometheus.Counter
}

func newPurgeMetrics() purgeMetrics {
	return purgeMetrics{purged: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imnode_store_tombstones_purged_total",
		Help: "Whole-record tombstones deleted after RecordTombstoneGrace (7 days).",
	})}
}

// PurgeShard deletes up to PurgeBatch whole-record tombstones of shard that
// are past RecordTombstoneGrace (see above), scanning the shard's keys after
// key after (nil, or a key of another shard: from the start). It returns
// how many it deleted and the key to continue after, nil once it reached
// the end of the shard.
func (s *Store) PurgeShard(shard uint16, after []byte) (purged int, next []byte, err error) {
	expired := versionOf(s.now().Add(-RecordTombstoneGrace))
	lower := ShardPrefix(shard)
	if after != nil && bytes.HasPrefix(after, lower) { // not a key of another shard (the ring moved)
		lower = append(bytes.Clone(after), 0)
	}
	var found []Op
	err = s.Scan(lower, ShardEnd(shard), false, func(k, v []byte) (bool, error) {
		if !tombstoneBefore(v, expired) {
			return true, nil
		}
		found = append(found, Op{Key: bytes.Clone(k), Value: bytes.Clone(v)})
		return len(found) < PurgeBatch, nil
	})
	if err != nil || len(found) == 0 {
		return 0, nil, err
	}
	if len(found) == PurgeBatch {
		next = found[len(found)-1].Key
	}
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	for _, op := range found {
		v, closer, err := s.db.Get(op.Key)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("store: purge: %w", err)
		}
		same := bytes.Equal(v, op.Value)
		_ = closer.Close()
		if !same {
			continue // written since the scan: not ours to delete
		}
		if err := pb.Delete(op.Key, nil); err != nil {
			return 0, nil, fmt.Errorf("store: purge: %w", err)
		}
		purged++
	}
	if purged == 0 {
		return 0, next, nil
	}
	if s.testHookPurge != nil {
		s.testHookPurge()
	}
	if err := s.commitLocked(pb, pebble.NoSync); err != nil {
		return 0, nil, err
	}
	s.purge.purged.Add(float64(purged))
	return purged, next, nil
}
