package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Peer transport methods. Requests and messages carry hand-encoded payloads
// (enc/dec below): fields are uvarint integers and length-prefixed byte
// strings, in the order each method's encoder writes them.
const (
	mGet           uint16 = iota + 1 // request: shard, key -> found, value
	mScan                            // request: lower, upper, reverse, limit -> pairs, more
	mWrite                           // request: shard, ops -> () ; the receiver coordinates
	mReplicate                       // request: shard, versioned ops -> ()
	mCommand                         // request: caller, command -> response | protocol error
	mOnline                          // request: app, ids -> online ids
	mRegister                        // request: registrations -> ()
	mSyncScan                        // request: shard, after, limit -> raw pairs, more
	mDigest                          // request: shard -> digest, keys
	mEnsureSynced                    // request: shard -> () once this node holds the shard
	msgFanout                        // message: app, ids, except, frame -> to the client shard's coordinator
	msgPush                          // message: app, ids, except, frame -> to a gateway
	msgKickTag                       // message: app, client, tag, device, except session
	msgSessionGone                   // message: app, client, session, clean
	mKick                            // request: app, client -> sessions closed on the receiver
	mResync                          // request: shards -> (); the receiver catches them up (sent by earlier builds)
	mPing                            // request: () -> (); reachability over the peer transport
	mLease                           // request: candidate's lease request -> per-shard grants (lease.go)
	mLeaseRelease                    // request: shards -> (); the holder gives its leases up (lease.go)
	mRangeDigest                     // request: shard, cutoff -> per-range digests (antientropy.go)
	mShardSize                       // request: shard -> keys, bytes (antientropy.go)
)

// skipEpochCheck lists the methods valid across roster epochs: replication,
// sync and registration carry their own checks (ready, replica sets).
func skipEpochCheck(m uint16) bool {
	switch m {
	case mReplicate, mRegister, mSyncScan, mDigest, mEnsureSynced, mOnline, mKick, mResync, mPing,
		mLease, mLeaseRelease, mRangeDigest, mShardSize:
		return true
	}
	return false
}

var errShortPayload = errors.New("cluster: truncated payload")

type enc struct{ b []byte }

func (e *enc) u64(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i64(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(v []byte) { e.u64(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)   { e.u64(uint64(len(v))); e.b = append(e.b, v...) }

func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// shards writes a list of shard numbers.
func (e *enc) shards(v []uint16) {
	e.u64(uint64(len(v)))
	for _, s := range v {
		e.u64(uint64(s))
	}
}

func (e *enc) strs(v []string) {
	e.u64(uint64(len(v)))
	for _, s := range v {
		e.str(s)
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errShortPayload
	}
}

func (d *dec) u64() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i64() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.u64()
	if n > uint64(len(d.b)) {
		d.fail()
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) bool() bool {
	if len(d.b) == 0 {
		d.fail()
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

// count reads a collection length, bounded by the bytes left (every
// element takes at least one byte), so garbage cannot make us allocate.
func (d *dec) count() int {
	n := d.u64()
	if n > uint64(len(d.b)) {
		d.fail()
		d.b = nil
		return 0
	}
	return int(n)
}

// shards reads a list of shard numbers, each below limit (the cluster's
// shard count).
func (d *dec) shards(limit int) []uint16 {
	n := d.count()
	out := make([]uint16, 0, n)
	for range n {
		s := d.u64()
		if d.err == nil && s >= uint64(limit) {
			d.err = fmt.Errorf("shard %d out of range [0, %d)", s, limit)
		}
		out = append(out, uint16(s))
	}
	return out
}

func (d *dec) strs() []string {
	n := d.count()
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str())
	}
	return out
}

func (d *dec) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("cluster: decode %s: %w", what, d.err)
	}
	return nil
}
