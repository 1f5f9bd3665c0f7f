package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Pending writes. A replicated write is first stored pending: durable, but
// outside every shard's key range, so reads, scans, digests and syncs of
// the shard do not see it. It becomes visible (its records merged into the
// shard like ApplyVersioned) when its coordinator reports that W replicas
// hold it (CommitPending), or when the next lease holder rolls it forward
// (CommitWrite); a takeover's resolution drops the pending writes of
// earlier terms (ResolveShard). The package replica owns the protocol; this
// file owns the layout:
//
//	pendingPrefix | shard (2) | epoch (8) | id (8)  ->  encoded ops
//	epochPrefix | shard (2)                         ->  epoch (8)
//
// both big endian, sorting after every shard's keys (like the lease grant
// marker), so ShardEnd bounds exclude them.
var (
	pendingPrefix = []byte("\xff\xff\xffimcluster.pending/")
	epochPrefix   = []byte("\xff\xff\xffimcluster.epoch/")
)

// PendingWrite is one write of a shard waiting for its quorum: the
// coordinator's term (Epoch), its id within the term (ID, unique per
// term: the coordinator's first hybrid-logical-clock version of the
// write) and its versioned ops (OpSet with versioned records, or
// OpDeleteRange). NoSync (Batch.SetNoSync, carried to the replicas with
// the write, not stored) makes PutPending skip its fsync.
type PendingWrite struct {
	Epoch, ID uint64
	Ops       []Op
	NoSync    bool
}

func pendingShardPrefix(shard uint16) []byte {
	return binary.BigEndian.AppendUint16(bytes.Clone(pendingPrefix), shard)
}

// pendingKey returns the key of a pending write.
func pendingKey(shard uint16, epoch, id uint64) []byte {
	k := pendingShardPrefix(shard)
	k = binary.BigEndian.AppendUint64(k, epoch)
	return binary.BigEndian.AppendUint64(k, id)
}

func epochKey(shard uint16) []byte {
	return binary.BigEndian.AppendUint16(bytes.Clone(epochPrefix), shard)
}

// encodePending encodes ops: count, then per op kind, key, value, each
// a uvarint (lengths before bytes).
func encodePending(ops []Op) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, op := range ops {
		b = binary.AppendUvarint(b, uint64(op.Kind))
		b = binary.AppendUvarint(b, uint64(len(op.Key)))
		b = append(b, op.Key...)
		b = binary.AppendUvarint(b, uint64(len(op.Value)))
		b = append(b, op.Value...)
	}
	return b
}

var errCorruptPending = errors.New("store: corrupt pending write")

func decodePending(b []byte) ([]Op, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errCorruptPending
	}
	b = b[k:]
	ops := make([]Op, 0, n)
	next := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		return bytes.Clone(v), true
	}
	for range n {
		kind, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errCorruptPending
		}
		b = b[k:]
		key, ok1 := next()
		val, ok2 := next()
		if !ok1 || !ok2 {
			return nil, errCorruptPending
		}
		ops = append(ops, Op{Kind: OpKind(kind), Key: key, Value: val})
	}
	if len(b) != 0 {
		return nil, errCorruptPending
	}
	return ops, nil
}

// checkPendingOps accepts what a replicated write may carry: versioned
// records (OpSet) and retention's OpDeleteRange, all inside shard.
func checkPendingOps(shard uint16, ops []Op) error {
	for _, op := range ops {
		if s, err := ShardOf(op.Key); err != nil || s != shard {
			return fmt.Errorf("store: pending op key %x outside shard %d", op.Key, shard)
		}
		switch op.Kind {
		case OpSet:
			if err := validRecord(op.Value); err != nil {
				return fmt.Errorf("%w: key %x", err, op.Key)
			}
		case OpDeleteRange:
		default:
			return fmt.Errorf("store: pending op kind %d", op.Kind)
		}
	}
	return nil
}

// PendingID names a pending write.
type PendingID struct {
	Shard     uint16
	Epoch, ID uint64
}

// PutPending stores w pending for shard, durably (fsync'd; with w.NoSync
// only in the write-ahead log, which a crash may lose: then the write is
// simply not held here), without making any of it visible. In the same
// batch it makes the pending writes committed visible and drops their
// records, like CommitPending (those this store does not hold are
// skipped).
//
// While the disk is low (diskguard.go) it refuses with ErrDiskLow and
// stores nothing: a new write, whose coordinator then counts this replica
// as failed (the commit notices it carried are sent again on their own).
func (s *Store) PutPending(shard uint16, w PendingWrite, committed ...PendingID) error {
	if err := s.disk.refuse(); err != nil {
		return err
	}
	if err := checkPendingOps(shard, w.Ops); err != nil {
		return err
	}
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	var visible []Op
	for _, c := range committed {
		if _, err := s.addCommitPending(pb, c, &visible); err != nil {
			return err
		}
	}
	tk, err := s.logChanges(visible)
	defer tk.done()
	if err != nil {
		return err
	}
	if err := pb.Set(pendingKey(shard, w.Epoch, w.ID), encodePending(w.Ops), nil); err != nil {
		return fmt.Errorf("store: batch: %w", err)
	}
	if err := s.commit(pb, syncOpts(!w.NoSync)); err != nil {
		return err
	}
	tk.commit()
	s.recent.put(PendingID{Shard: shard, Epoch: w.Epoch, ID: w.ID}, w.Ops)
	s.recent.stored.Add(1)
	return nil
}

// recentPending keeps the ops of the writes stored pending lately, until
// their commit takes them, so that committing one (a replica's commit
// notice, usually a few milliseconds after the write) reads no pending
// record back from Pebble and decodes nothing. A commit notice names a write
// its coordinator made visible, so applying it from here is right whatever
// happened to the pending record since, except when the shard's copy was
// dropped from this node: DeleteShard and DropPendingUpTo forget the
// shard's writes (ResolveShard forgets those of earlier terms). Bounded:
// writes whose ops exceed recentMaxWrite bytes are not kept, and when the
// writes kept reach recentMaxBytes or recentMaxWrites it is emptied (their
// commits then read their records, as without it), so writes whose notice
// never comes cannot pin memory. mu is a leaf lock.
type recentPending struct {
	mu    sync.Mutex
	m     map[PendingID][]Op
	bytes int

	// stored and unpended count the writes stored pending (PutPending) and
	// those committed without a pending record (CommitUnpended) since the
	// store opened: WriteCounts.
	stored, unpended atomic.Uint64
}

// WriteCounts returns how many replicated writes this store held pending
// (PutPending) and how many it made visible without a pending record
// (CommitUnpended) since it opened.
func (s *Store) WriteCounts() (pending, unpended uint64) {
	return s.recent.stored.Load(), s.recent.unpended.Load()
}

const (
	recentMaxWrite  = 16 << 10
	recentMaxBytes  = 8 << 20
	recentMaxWrites = 4096
)

func (r *recentPending) put(id PendingID, ops []Op) {
	n := 0
	for _, op := range ops {
		n += len(op.Key) + len(op.Value)
	}
	if n > recentMaxWrite {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= recentMaxWrites || r.bytes+n > recentMaxBytes {
		r.m, r.bytes = make(map[PendingID][]Op, 64), 0
	}
	r.m[id] = ops
	r.bytes += n
}

// take returns and forgets the ops of id, if kept.
func (r *recentPending) take(id PendingID) ([]Op, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops, ok := r.m[id]
	if ok {
		delete(r.m, id)
		for _, op := range ops {
			r.bytes -= len(op.Key) + len(op.Value)
		}
	}
	return ops, ok
}

// forget drops the kept writes of shard that drop says to.
func (r *recentPending) forget(shard uint16, drop func(PendingID) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ops := range r.m {
		if id.Shard == shard && drop(id) {
			delete(r.m, id)
			for _, op := range ops {
				r.bytes -= len(op.Key) + len(op.Value)
			}
		}
	}
}

// addCommitPending adds to pb what makes pending write c visible and drops
// its record, and appends the ops it makes visible to visible (for the
// batch's change-log entry, logChanges); false (and nothing added) if this
// store does not hold it.
func (s *Store) addCommitPending(pb *pebble.Batch, c PendingID, visible *[]Op) (bool, error) {
	key := pendingKey(c.Shard, c.Epoch, c.ID)
	ops, ok := s.recent.take(c)
	if !ok {
		v, err := s.Get(key)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if ops, err = decodePending(v); err != nil {
			return false, fmt.Errorf("%w: key %x", err, key)
		}
	}
	if err := checkPendingOps(c.Shard, ops); err != nil {
		return false, err
	}
	if err := addOps(pb, ops, true); err != nil {
		return false, err
	}
	if err := pb.Delete(key, nil); err != nil {
		return false, fmt.Errorf("store: batch: %w", err)
	}
	*visible = append(*visible, ops...)
	return true, nil
}

// CommitWrite makes w visible (its ops applied like ApplyVersioned) and
// drops its pending record, if any, in one durable batch. Applying the
// same write twice is harmless: its records merge last-writer-wins.
func (s *Store) CommitWrite(shard uint16, w PendingWrite) error {
	return s.commitWrite(shard, w, pebble.Sync, true)
}

// CommitWriteNoSync is CommitWrite without waiting for the write-ahead log
// to be synced: after a crash the batch is either there or not at all, and
// if not, the write is still pending here (its pending record was synced
// before), so the shard's next resolution settles it. The next synced
// batch syncs it too.
func (s *Store) CommitWriteNoSync(shard uint16, w PendingWrite) error {
	return s.commitWrite(shard, w, pebble.NoSync, true)
}

// CommitUnpended makes w visible in one batch, fsync'd unless w.NoSync,
// without a pending record ever being stored: for a write whose quorum
// its coordinator meets alone (W = 1), where a pending phase would decide
// nothing. A crash leaves the batch whole or absent (then the write was
// never acknowledged). While the disk is low it is refused (ErrDiskLow),
// like PutPending.
func (s *Store) CommitUnpended(shard uint16, w PendingWrite) error {
	if err := s.disk.refuse(); err != nil {
		return err
	}
	return s.commitWrite(shard, w, syncOpts(!w.NoSync), false)
}

// commitWrite applies w's ops in one batch and, with held, drops its
// pending record.
func (s *Store) commitWrite(shard uint16, w PendingWrite, opts *pebble.WriteOptions, held bool) error {
	if err := checkPendingOps(shard, w.Ops); err != nil {
		return err
	}
	if held {
		s.recent.take(PendingID{Shard: shard, Epoch: w.Epoch, ID: w.ID})
	}
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	if err := addOps(pb, w.Ops, true); err != nil {
		return err
	}
	tk, err := s.logChanges(w.Ops)
	defer tk.done()
	if err != nil {
		return err
	}
	if held {
		if err := pb.Delete(pendingKey(shard, w.Epoch, w.ID), nil); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	if err := s.commit(pb, opts); err != nil {
		return err
	}
	tk.commit()
	if !held {
		s.recent.unpended.Add(1)
	}
	return nil
}

// CommitPending makes the pending write (epoch, id) of shard visible and
// drops its record, like CommitWriteNoSync; false if this store holds no
// such pending write (already committed, dropped by a resolution, or never
// received).
func (s *Store) CommitPending(shard uint16, epoch, id uint64) (bool, error) {
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	var visible []Op
	held, err := s.addCommitPending(pb, PendingID{Shard: shard, Epoch: epoch, ID: id}, &visible)
	if err != nil || !held {
		return false, err
	}
	tk, err := s.logChanges(visible)
	defer tk.done()
	if err != nil {
		return false, err
	}
	if err := s.commit(pb, pebble.NoSync); err != nil {
		return false, err
	}
	tk.commit()
	return true, nil
}

// ScanPending calls fn for the pending writes of shard in (epoch, id)
// order, starting after (afterEpoch, afterID) (0, 0: from the first),
// until fn returns false or an error.
func (s *Store) ScanPending(shard uint16, afterEpoch, afterID uint64, fn func(w PendingWrite, size int) (bool, error)) error {
	lower := pendingShardPrefix(shard)
	if afterEpoch != 0 || afterID != 0 {
		lower = append(pendingKey(shard, afterEpoch, afterID), 0)
	}
	p := pendingShardPrefix(shard)
	return s.Scan(lower, PrefixEnd(p), false, func(k, v []byte) (bool, error) {
		if len(k) != len(p)+16 {
			return false, fmt.Errorf("%w: key %x", errCorruptPending, k)
		}
		ops, err := decodePending(v)
		if err != nil {
			return false, fmt.Errorf("%w: key %x", err, k)
		}
		w := PendingWrite{Epoch: binary.BigEndian.Uint64(k[len(p):]), ID: binary.BigEndian.Uint64(k[len(p)+8:]), Ops: ops}
		return fn(w, len(v))
	})
}

// epochCache keeps each shard's recorded term in memory: every replicated
// write checks it (a point read of Pebble per write otherwise, mostly from
// the table files since the record is rarely written). mu is held from the
// store read that fills a miss to the fill, and across every write of an
// epoch record (writeEpoch), so the cache never holds a value older than
// the store's. A zero Store (tests) works: the map is made on first use.
type epochCache struct {
	mu sync.RWMutex
	m  map[uint16]uint64
}

// ShardEpoch returns the newest term a takeover of shard recorded here
// (ResolveShard), 0 if none.
func (s *Store) ShardEpoch(shard uint16) (uint64, error) {
	s.epochs.mu.RLock()
	e, ok := s.epochs.m[shard]
	s.epochs.mu.RUnlock()
	if ok {
		return e, nil
	}
	s.epochs.mu.Lock()
	defer s.epochs.mu.Unlock()
	if e, ok := s.epochs.m[shard]; ok {
		return e, nil
	}
	e, err := s.readEpoch(shard)
	if err != nil {
		return 0, err
	}
	s.cacheEpoch(shard, e)
	return e, nil
}

// cacheEpoch records shard's term in the cache; epochs.mu is held.
func (s *Store) cacheEpoch(shard uint16, e uint64) {
	if s.epochs.m == nil {
		s.epochs.m = map[uint16]uint64{}
	}
	s.epochs.m[shard] = e
}

// writeEpoch runs write, which changes shard's epoch record and returns the
// new term, with the cache locked, and caches the term if write succeeded
// (forgets the shard otherwise: the store may or may not hold it).
func (s *Store) writeEpoch(shard uint16, write func() (uint64, error)) error {
	s.epochs.mu.Lock()
	defer s.epochs.mu.Unlock()
	e, err := write()
	if err != nil {
		delete(s.epochs.m, shard)
		return err
	}
	s.cacheEpoch(shard, e)
	return nil
}

// readEpoch reads shard's recorded term from the database.
func (s *Store) readEpoch(shard uint16) (uint64, error) {
	v, err := s.Get(epochKey(shard))
	switch {
	case errors.Is(err, ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case len(v) != 8:
		return 0, fmt.Errorf("store: epoch record of shard %d has %d bytes", shard, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// ResolveShard records that shard's term epoch has begun, durably: the
// pending writes of earlier terms are dropped (the new term's holder rolled
// forward those that may have been acknowledged), and the recorded epoch
// rises to epoch (it never goes down).
func (s *Store) ResolveShard(shard uint16, epoch uint64) error {
	return s.writeEpoch(shard, func() (uint64, error) {
		cur, err := s.readEpoch(shard)
		if err != nil {
			return 0, err
		}
		ops := []Op{{Kind: OpDeleteRange, Key: pendingShardPrefix(shard), Value: pendingKey(shard, epoch, 0)}}
		if epoch > cur {
			ops = append(ops, Op{Kind: OpSet, Key: epochKey(shard), Value: binary.BigEndian.AppendUint64(nil, epoch)})
		}
		s.recent.forget(shard, func(id PendingID) bool { return id.Epoch < epoch })
		// Not Apply: a term's record passes the disk guard (diskguard.go).
		return max(cur, epoch), s.applyPlain(ops, pebble.Sync)
	})
}

// dropPending returns the ops deleting shard's pending writes and epoch.
func dropPending(shard uint16) []Op {
	p := pendingShardPrefix(shard)
	return []Op{{Kind: OpDeleteRange, Key: p, Value: PrefixEnd(p)}, {Kind: OpDelete, Key: epochKey(shard)}}
}
