package store

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// DigestBuckets is the number of buckets a shard's range digest splits the
// shard's keys into. A key's bucket depends only on the key (DigestBucket),
// so every replica puts a key in the same bucket, and anti-entropy can copy
// only the buckets whose digests differ. 64 buckets fit a uint64 bit mask
// and keep a digest answer near 1 KiB, while one differing record costs
// 1/64 of the shard.
const DigestBuckets = 64

// AllBuckets is the bucket mask that selects every bucket.
const AllBuckets = ^uint64(0)

// DigestBucket returns the digest bucket of key: the top bits of its
// xxhash, which spreads every family and app evenly over the buckets. It
// is part of the peer protocol: replicas compare buckets by number.
func DigestBucket(key []byte) int {
	return int(xxhash.Sum64(key) >> 58) // 64 - log2(DigestBuckets)
}

// BucketDigest summarizes the records of one digest bucket.
type BucketDigest struct {
	// Sum is the sum (mod 2^64) of the records' hashes, each hash covering
	// the key and the whole stored value (header and body): independent of
	// the order records are added in.
	Sum uint64
	// Keys counts the records.
	Keys int64
	// Bytes is the size of the records' keys and values.
	Bytes int64
}

// RangeDigest is a shard's digest split into DigestBuckets buckets. The zero
// value is the digest of an empty shard. A RangeDigest is a value: it is
// not safe for concurrent mutation.
type RangeDigest struct {
	Buckets [DigestBuckets]BucketDigest
}

// recordHash hashes one record: the key's length, the key and the value.
func recordHash(k, v []byte) uint64 {
	var h xxhash.Digest
	h.Reset()
	var lb [4]byte
	binary.BigEndian.PutUint32(lb[:], uint32(len(k)))
	_, _ = h.Write(lb[:])
	_, _ = h.Write(k)
	_, _ = h.Write(v)
	return h.Sum64()
}

// Add counts one record in its bucket.
func (d *RangeDigest) Add(k, v []byte) {
	b := &d.Buckets[DigestBucket(k)]
	b.Sum += recordHash(k, v)
	b.Keys++
	b.Bytes += int64(len(k) + len(v))
}

// Summary hashes every bucket into one value: two replicas with equal
// summaries hold the same records (up to a 64-bit hash collision).
func (d *RangeDigest) Summary() uint64 {
	var buf [DigestBuckets * 16]byte
	for i, b := range d.Buckets {
		binary.BigEndian.PutUint64(buf[i*16:], b.Sum)
		binary.BigEndian.PutUint64(buf[i*16+8:], uint64(b.Keys))
	}
	return xxhash.Sum64(buf[:])
}

// Keys returns the number of records in the buckets of mask.
func (d *RangeDigest) Keys(mask uint64) int64 {
	return d.sum(mask, func(b *BucketDigest) int64 { return b.Keys })
}

// Bytes returns the size of the records in the buckets of mask.
func (d *RangeDigest) Bytes(mask uint64) int64 {
	return d.sum(mask, func(b *BucketDigest) int64 { return b.Bytes })
}

// sum adds f over the buckets of mask.
func (d *RangeDigest) sum(mask uint64, f func(*BucketDigest) int64) int64 {
	var n int64
	for i := range d.Buckets {
		if mask&(1<<i) != 0 {
			n += f(&d.Buckets[i])
		}
	}
	return n
}

// Diff returns the mask of the buckets where d and o differ.
func (d *RangeDigest) Diff(o *RangeDigest) uint64 {
	var mask uint64
	for i := range d.Buckets {
		if d.Buckets[i].Sum != o.Buckets[i].Sum || d.Buckets[i].Keys != o.Buckets[i].Keys {
			mask |= 1 << i
		}
	}
	return mask
}

// ShardRangeDigest computes the range digest of a shard's records whose
// header version is at most maxVersion (^uint64(0) for all): anti-entropy
// compares settled data and ignores writes still in flight. It leaves out
// tombstones near or past their purge (tombstoneHorizon, purge.go), which
// one replica may have deleted before another. It hashes the whole stored
// value, so replicas holding different bodies under the same version
// differ. A value shorter than the versioned header is ErrCorruptValue.
func (s *Store) ShardRangeDigest(shard uint16, maxVersion uint64) (RangeDigest, error) {
	var d RangeDigest
	err := s.scanDigested(shard, maxVersion, d.Add)
	return d, err
}

// scanDigested calls fn, in key order, for the records of shard that
// digests over versions up to maxVersion count: those with a version at
// most maxVersion, less the tombstones near or past their purge
// (tombstoneHorizon). A value shorter than the versioned header is
// ErrCorruptValue. fn must not retain k or v.
func (s *Store) scanDigested(shard uint16, maxVersion uint64, fn func(k, v []byte)) error {
	horizon := tombstoneHorizon(maxVersion, s.now())
	return s.ScanShard(shard, func(k, v []byte) (bool, error) {
		if len(v) < versionHeader {
			return false, fmt.Errorf("%w: key %x", ErrCorruptValue, k)
		}
		if binary.BigEndian.Uint64(v[1:versionHeader]) <= maxVersion && !tombstoneBefore(v, horizon) {
			fn(k, v)
		}
		return true, nil
	})
}

// ShardSize counts the keys of a shard and the bytes of their keys and
// values (what a full sync of the shard copies). It scans the shard.
func (s *Store) ShardSize(shard uint16) (keys, bytes int64, err error) {
	err = s.ScanShard(shard, func(k, v []byte) (bool, error) {
		keys++
		bytes += int64(len(k) + len(v))
		return true, nil
	})
	return keys, bytes, err
}

// ScanBuckets calls fn, in key order, for the records of shard after key
// after (nil: from the start of the shard) whose bucket is in mask, until fn
// returns false or an error or budget records were examined (matching or
// not; 0 means no budget). It returns the last key examined (nil if none;
// a copy) and whether the shard's end was reached. fn must not retain k or
// v.
func (s *Store) ScanBuckets(shard uint16, after []byte, mask uint64, budget int,
	fn func(k, v []byte) (bool, error)) (last []byte, end bool, err error) {
	lower := ShardPrefix(shard)
	if after != nil {
		lower = append(append([]byte(nil), after...), 0)
	}
	end = true
	seen := 0
	err = s.Scan(lower, ShardEnd(shard), false, func(k, v []byte) (bool, error) {
		seen++
		last = append(last[:0], k...)
		if mask == AllBuckets || mask&(1<<DigestBucket(k)) != 0 {
			cont, err := fn(k, v)
			if err != nil || !cont {
				end = false
				return false, err
			}
		}
		if budget > 0 && seen >= budget {
			end = false
			return false, nil
		}
		return true, nil
	})
	return last, end, err
}
