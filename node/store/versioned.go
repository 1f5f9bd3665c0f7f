package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
)

// Replicated values. A replicated key's value is a versioned record:
//
//	kind (1 byte: VersionValue or VersionTombstone) | version (8 bytes, big endian) | value
//
// written with Pebble's Merge under the lwwMerger: of all records ever
// written to a key, the one with the highest version wins (ties broken by
// the bytes, so every replica picks the same), whatever the order they
// arrive in. Replicas therefore converge by exchanging records in any order,
// and a write never needs a read first.
const (
	VersionValue     byte = 1
	VersionTombstone byte = 2
	versionHeader         = 9
)

// ErrCorruptValue reports a replicated value that is not a versioned record.
var ErrCorruptValue = errors.New("store: corrupt versioned value")

// EncodeVersioned returns the versioned record of value at version; a
// tombstone records a deletion.
func EncodeVersioned(version uint64, tombstone bool, value []byte) []byte {
	out := make([]byte, versionHeader, versionHeader+len(value))
	out[0] = VersionValue
	if tombstone {
		out[0] = VersionTombstone
		value = nil
	}
	binary.BigEndian.PutUint64(out[1:], version)
	return append(out, value...)
}

// DecodeVersioned splits a versioned record. value aliases rec. For a
// VersionDoc record (see VersionDoc) value is the doc's body, not a value:
// read it with DocValue.
func DecodeVersioned(rec []byte) (version uint64, tombstone bool, value []byte, err error) {
	if len(rec) < versionHeader || rec[0] < VersionValue || rec[0] > VersionDoc {
		return 0, false, nil, ErrCorruptValue
	}
	return binary.BigEndian.Uint64(rec[1:]), rec[0] == VersionTombstone, rec[versionHeader:], nil
}

// newer reports whether record a wins over record b.
func newer(a, b []byte) bool {
	va, vb := binary.BigEndian.Uint64(a[1:]), binary.BigEndian.Uint64(b[1:])
	if va != vb {
		return va > vb
	}
	return bytes.Compare(a, b) > 0
}

const lwwMergerName = "imcluster.lww.v1"

// lwwMerger keeps the winning record of a key's merge operands, merging
// VersionDoc records per field (see VersionDoc).
var lwwMerger = &pebble.Merger{
	Name: lwwMergerName,
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &lww{}
		return m, m.add(value)
	},
}

// lww is the merge state of one key: the winning whole record (best), or
// the docs merged so far (doc, which absorbs whole-record tombstones).
type lww struct {
	best []byte
	doc  *docMerge
}

func (m *lww) add(v []byte) error {
	if len(v) < versionHeader {
		return ErrCorruptValue
	}
	version := binary.BigEndian.Uint64(v[1:])
	switch v[0] {
	case VersionDoc:
		if m.doc == nil {
			if m.best != nil && m.best[0] == VersionValue && binary.BigEndian.Uint64(m.best[1:]) > version {
				return validDoc(v) // a newer whole value wins (a doc wins a tie)
			}
			m.doc = newDocMerge()
			if m.best != nil && m.best[0] == VersionTombstone {
				m.doc.raiseFloor(binary.BigEndian.Uint64(m.best[1:]))
			}
			m.best = nil
		}
		return m.doc.add(append([]byte(nil), v...))
	case VersionTombstone:
		if m.doc != nil {
			m.doc.raiseFloor(version)
			return nil
		}
	case VersionValue:
		if m.doc != nil {
			if version > m.doc.version {
				m.doc, m.best = nil, append([]byte(nil), v...)
			}
			return nil
		}
	default:
		return ErrCorruptValue
	}
	if m.best == nil || newer(v, m.best) {
		m.best = append(m.best[:0:0], v...)
	}
	return nil
}

func (m *lww) MergeNewer(v []byte) error { return m.add(v) }
func (m *lww) MergeOlder(v []byte) error { return m.add(v) }

func (m *lww) Finish(bool) ([]byte, io.Closer, error) {
	if m.doc != nil {
		return m.doc.encode(), nil, nil
	}
	return m.best, nil, nil
}

// validRecord reports whether v is a versioned record replicas accept:
// a value, a tombstone or a canonical doc.
func validRecord(v []byte) error {
	if len(v) < versionHeader {
		return ErrCorruptValue
	}
	switch v[0] {
	case VersionValue, VersionTombstone:
		return nil
	case VersionDoc:
		return validDoc(v)
	}
	return ErrCorruptValue
}

// ApplyVersioned applies replicated writes atomically and durably: OpSet
// values must be versioned records (tombstones and canonical docs included)
// and are merged last-writer-wins (docs per field); an OpMergeFields is
// rejected (the coordinator versions it first); OpDeleteRange deletes its range outright (time-based
// retention, which every replica applies alike); OpDelete removes a key
// without a trace (local cleanup only). While the disk is low, ops that set
// a key are refused (ErrDiskLow: diskguard.go).
func (s *Store) ApplyVersioned(ops []Op) error {
	if err := s.disk.refuseAdds(ops); err != nil {
		return err
	}
	return s.apply(ops, true, s.db.NewBatch(), pebble.Sync)
}

// ApplyVersionedInReserve is ApplyVersioned that passes the disk guard
// (diskguard.go): the catch-up a node whose disk is low needs before it
// coordinates a shard no other replica can take (every replica is low), so
// that it serves what the previous holder acknowledged. It copies what the
// shard's replicas stored since this node's last catch-up, and no new write
// is taken while they are all low.
func (s *Store) ApplyVersionedInReserve(ops []Op) error {
	return s.apply(ops, true, s.db.NewBatch(), pebble.Sync)
}

// ShardDigest hashes every (key, version, kind) of a shard in key order,
// and the body of field docs, and counts the keys: replicas with equal
// digests hold the same data (other values are determined by their
// versions).
func (s *Store) ShardDigest(shard uint16) (digest uint64, keys int64, err error) {
	return s.ShardDigestUpTo(shard, ^uint64(0))
}

// ShardDigestUpTo is ShardDigest over the records with versions up to
// maxVersion: anti-entropy compares settled data and ignores writes still
// in flight to the replicas. Like ShardRangeDigest it leaves out tombstones
// near or past their purge.
func (s *Store) ShardDigestUpTo(shard uint16, maxVersion uint64) (digest uint64, keys int64, err error) {
	h := xxhash.New()
	var vb [versionHeader]byte
	err = s.scanDigested(shard, maxVersion, func(k, v []byte) {
		var lb [4]byte
		binary.BigEndian.PutUint32(lb[:], uint32(len(k)))
		_, _ = h.Write(lb[:])
		_, _ = h.Write(k)
		copy(vb[:], v[:versionHeader])
		_, _ = h.Write(vb[:])
		if v[0] == VersionDoc {
			// A doc's version does not determine its fields: hash them.
			_, _ = h.Write(v[versionHeader:])
		}
		keys++
	})
	return h.Sum64(), keys, err
}

// DeleteShard removes every key of a shard, its change log, its pending
// writes and its recorded term (a replica this node no longer holds, after
// its new owners confirmed it).
func (s *Store) DeleteShard(shard uint16) error {
	p := ShardPrefix(shard)
	return s.writeEpoch(shard, func() (uint64, error) {
		s.recent.forget(shard, func(PendingID) bool { return true })
		ops := []Op{{Kind: OpDeleteRange, Key: p, Value: ShardEnd(shard)}}
		if err := s.Apply(append(ops, dropPending(shard)...)); err != nil {
			return 0, err
		}
		s.dropShardChanges(shard)
		return 0, nil
	})
}

// DropPendingUpTo drops shard's pending writes whose id is at most id and
// returns how many it dropped (the writes a copy held from before its node
// left the shard's replicas, when the shard is placed there again).
func (s *Store) DropPendingUpTo(shard uint16, id uint64) (int, error) {
	s.recent.forget(shard, func(w PendingID) bool { return w.ID <= id })
	var ops []Op
	err := s.ScanPending(shard, 0, 0, func(w PendingWrite, _ int) (bool, error) {
		if w.ID <= id {
			ops = append(ops, Op{Kind: OpDelete, Key: pendingKey(shard, w.Epoch, w.ID)})
		}
		return true, nil
	})
	if err != nil || len(ops) == 0 {
		return 0, err
	}
	return len(ops), s.Apply(ops)
}

// ScanShard calls fn for every key of shard in order, as Scan does, and
// for nothing outside it: for the last shard (0xffff), whose prefix has no
// PrefixEnd, it stops at ShardEnd, before node-local keys sorting above
// every shard.
func (s *Store) ScanShard(shard uint16, fn func(k, v []byte) (bool, error)) error {
	return s.Scan(ShardPrefix(shard), ShardEnd(shard), false, fn)
}

// ShardEnd returns a key above every key of shard (for shard 0xffff, whose
// prefix has no PrefixEnd, a key no encoded key reaches: encoded keys
// continue with a string tag below 0xff).
func ShardEnd(shard uint16) []byte {
	if end := PrefixEnd(ShardPrefix(shard)); end != nil {
		return end
	}
	return []byte{0xff, 0xff, 0xff}
}
