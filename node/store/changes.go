package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Change log. Every batch that makes replicated records of a shard visible
// here (a coordinator's commit, a replica's commit of a pending write, a
// roll-forward, a sync or repair page: commitWrite and ApplyVersioned)
// carries, in the same Pebble batch, one entry per shard it touches:
//
//	changePrefix | shard (2) | seq (8)  ->  keys (uvarint length, bytes)...
//
// seq is store-wide and grows with every batch; the entries sort after every
// shard's keys (like the pending writes), so no read, scan, digest, sync or
// anti-entropy sees them. A catch-up that copied a shard from this store up
// to a head (ChangeHead) later asks only for the keys of the entries after
// it (ScanChanges) and copies their current records: everything that became
// visible here since. Only the takeover and returning-replica catch-ups use
// it; anti-entropy stays on digests.
//
// The log is this process's: Open discards what an earlier run left and
// picks a new random incarnation, so a cursor taken from an earlier run (or
// another store) never matches and its holder falls back to the digest
// comparison. The sweeper trims it (TrimChanges) to ChangeLogMaxAge and
// ChangeLogMaxEntries; a cursor at or below the trimmed seq falls back too.
var changePrefix = []byte("\xff\xff\xffimcluster.changes/")

// Change log bounds (TrimChanges): entries older than ChangeLogMaxAge, or
// more than ChangeLogMaxEntries batches behind the newest, are dropped. An
// entry costs about its keys (some 200 bytes for a message) in the
// write-ahead log and the memtable; at 6,000 writes/s the log holds at most
// a few minutes.
const (
	ChangeLogMaxAge     = 5 * time.Minute
	ChangeLogMaxEntries = 1 << 20
)

// ChangeCursor names a position in a store's change log: the log of the
// run Incarnation, up to and including Seq.
type ChangeCursor struct {
	Incarnation, Seq uint64
}

// ErrChangesTrimmed reports that the change log no longer reaches back to
// a cursor (another run's, or trimmed): the caller compares digests.
var ErrChangesTrimmed = errors.New("store: the change log does not reach back to the cursor")

// changeLog is the store's change-log state. mu guards everything but
// incarnation (set at Open).
type changeLog struct {
	incarnation uint64

	mu sync.Mutex
	// next is the seq of the next batch; inflight lists the seqs of the
	// batches being committed, in increasing order: ChangeHead is below
	// the first of them, so a cursor never skips a batch committed late.
	next     uint64
	inflight []uint64
	// trimmed is the highest seq TrimChanges dropped (0: none); shards
	// lists the shards with entries, for TrimChanges.
	trimmed uint64
	shards  map[uint16]struct{}
	// marks are (time, head) samples of TrimChanges, oldest first: the
	// age bound trims through the newest mark older than the age.
	marks []changeMark
}

type changeMark struct {
	at   time.Time
	head uint64
}

// openChanges discards an earlier run's change log and starts this one's.
func (s *Store) openChanges() error {
	end := PrefixEnd(changePrefix)
	if err := s.db.DeleteRange(changePrefix, end, pebble.Sync); err != nil {
		return fmt.Errorf("store: clear the change log: %w", err)
	}
	var inc [8]byte
	_, _ = rand.Read(inc[:]) // never fails
	s.changes = changeLog{incarnation: binary.BigEndian.Uint64(inc[:]) | 1, next: 1, shards: map[uint16]struct{}{}}
	return nil
}

func changeKey(shard uint16, seq uint64) []byte {
	return appendChangeKey(make([]byte, 0, len(changePrefix)+10), shard, seq)
}

func appendChangeKey(k []byte, shard uint16, seq uint64) []byte {
	k = append(k, changePrefix...)
	k = binary.BigEndian.AppendUint16(k, shard)
	return binary.BigEndian.AppendUint64(k, seq)
}

// logChanges adds to pb the change-log entries of the versioned records
// ops set (one per shard). The caller commits pb and then calls the
// ticket's done, whatever the outcome. It is the one hook of the commit
// paths.
func (s *Store) logChanges(pb *pebble.Batch, ops []Op) (changeTicket, error) {
	c := &s.changes
	first, size := -1, 0
	for i, op := range ops {
		if op.Kind == OpSet {
			if first < 0 {
				first = i
			}
			size += binary.MaxVarintLen32 + len(op.Key)
		}
	}
	if first < 0 {
		return changeTicket{}, nil
	}
	shard, err := ShardOf(ops[first].Key)
	if err != nil {
		return changeTicket{}, err
	}
	c.mu.Lock()
	t := changeTicket{c: c, seq: c.next}
	c.next++
	c.inflight = append(c.inflight, t.seq)
	c.shards[shard] = struct{}{}
	c.mu.Unlock()
	shards := []uint16{shard}
	for _, op := range ops[first+1:] {
		if sh, err := ShardOf(op.Key); err == nil && op.Kind == OpSet && sh != shard {
			shards = shardsOf(ops[first:]) // rare: a batch of several shards
			break
		}
	}
	for _, sh := range shards {
		if sh != shard {
			c.mu.Lock()
			c.shards[sh] = struct{}{}
			c.mu.Unlock()
		}
		val := make([]byte, 0, size)
		for _, op := range ops[first:] {
			if k, err := ShardOf(op.Key); op.Kind == OpSet && err == nil && k == sh {
				val = binary.AppendUvarint(val, uint64(len(op.Key)))
				val = append(val, op.Key...)
			}
		}
		var kb [64]byte
		if err := pb.Set(appendChangeKey(kb[:0], sh, t.seq), val, nil); err != nil {
			return t, fmt.Errorf("store: batch: %w", err)
		}
	}
	return t, nil
}

// changeTicket is a batch's sequence in the change log, in flight until
// done.
type changeTicket struct {
	c   *changeLog
	seq uint64
}

// done ends the batch's flight (committed or not).
func (t changeTicket) done() {
	if t.c == nil {
		return
	}
	t.c.mu.Lock()
	if i := slices.Index(t.c.inflight, t.seq); i >= 0 {
		t.c.inflight = slices.Delete(t.c.inflight, i, i+1)
	}
	t.c.mu.Unlock()
}

// shardsOf lists the distinct shards of ops' keys (all valid) in order.
func shardsOf(ops []Op) []uint16 {
	var out []uint16
	for _, op := range ops {
		if sh, err := ShardOf(op.Key); err == nil && op.Kind == OpSet && !slices.Contains(out, sh) {
			out = append(out, sh)
		}
	}
	return out
}

// ChangeHead returns the cursor of everything committed here so far: every
// batch at or below it has committed (or failed), none is still in flight.
func (s *Store) ChangeHead() ChangeCursor {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	head := c.next - 1
	if len(c.inflight) > 0 {
		head = c.inflight[0] - 1
	}
	return ChangeCursor{Incarnation: c.incarnation, Seq: head}
}

// ScanChanges calls fn, in log order, with each entry of shard after
// from.Seq and up to upTo (a seq at or below ChangeHead), and its keys
// (fn must not retain them), until fn returns false or an error. It
// returns ErrChangesTrimmed if from is another run's cursor or the log no
// longer reaches back to it.
func (s *Store) ScanChanges(shard uint16, from ChangeCursor, upTo uint64, fn func(seq uint64, keys [][]byte) (bool, error)) error {
	c := &s.changes
	c.mu.Lock()
	gone := from.Incarnation != c.incarnation || from.Seq < c.trimmed || upTo >= c.next
	c.mu.Unlock()
	if gone {
		return ErrChangesTrimmed
	}
	var keys [][]byte
	err := s.Scan(changeKey(shard, from.Seq+1), changeKey(shard, upTo+1), false, func(k, v []byte) (bool, error) {
		if len(k) != len(changePrefix)+10 {
			return false, fmt.Errorf("%w: change log key %x", ErrCorruptKey, k)
		}
		keys = keys[:0]
		for len(v) > 0 {
			n, w := binary.Uvarint(v)
			if w <= 0 || n > uint64(len(v)-w) {
				return false, fmt.Errorf("%w: change log entry %x", ErrCorruptValue, k)
			}
			keys = append(keys, v[w:w+int(n)])
			v = v[w+int(n):]
		}
		return fn(binary.BigEndian.Uint64(k[len(k)-8:]), keys)
	})
	if err != nil {
		return err
	}
	// A trim that ran during the scan may have removed entries it was
	// about to read.
	c.mu.Lock()
	gone = from.Seq < c.trimmed
	c.mu.Unlock()
	if gone {
		return ErrChangesTrimmed
	}
	return nil
}

// ChangedSince reports whether shard has a change-log entry after from
// (true as well when from is another run's cursor or trimmed past).
func (s *Store) ChangedSince(shard uint16, from ChangeCursor) (bool, error) {
	changed := false
	err := s.ScanChanges(shard, from, s.ChangeHead().Seq, func(uint64, [][]byte) (bool, error) {
		changed = true
		return false, nil
	})
	if errors.Is(err, ErrChangesTrimmed) {
		return true, nil
	}
	return changed, err
}

// TrimChanges drops the change-log entries older than maxAge (as sampled
// by earlier calls: call it periodically) or more than maxEntries batches
// behind the head, and returns the highest seq dropped.
func (s *Store) TrimChanges(now time.Time, maxAge time.Duration, maxEntries uint64) (uint64, error) {
	c := &s.changes
	c.mu.Lock()
	head := c.next - 1
	c.marks = append(c.marks, changeMark{at: now, head: head})
	through := c.trimmed
	for len(c.marks) > 0 && now.Sub(c.marks[0].at) >= maxAge {
		through = max(through, c.marks[0].head)
		c.marks = c.marks[1:]
	}
	if head > maxEntries {
		through = max(through, head-maxEntries)
	}
	var shards []uint16
	if through > c.trimmed {
		for sh := range c.shards {
			shards = append(shards, sh)
		}
		// Raised before the entries go, so a scan that may miss them
		// sees it (ScanChanges checks before and after).
		c.trimmed = through
	}
	c.mu.Unlock()
	if len(shards) == 0 {
		return through, nil
	}
	if err := s.dropChanges(shards, through); err != nil {
		return 0, err
	}
	return through, nil
}

// dropChanges deletes the entries of shards up to and including seq
// through. Not synced: a crash discards the whole log anyway (openChanges).
func (s *Store) dropChanges(shards []uint16, through uint64) error {
	pb := s.db.NewBatch()
	defer func() { _ = pb.Close() }()
	for _, sh := range shards {
		if err := pb.DeleteRange(changeKey(sh, 0), changeKey(sh, through+1), nil); err != nil {
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	if err := pb.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// dropShardChanges returns the op deleting shard's whole change log (its
// copy is deleted: a catch-up from this store must not take the rest for
// the whole shard; the next copy logs every record it receives).
func dropShardChanges(shard uint16) Op {
	return Op{Kind: OpDeleteRange, Key: changeKey(shard, 0), Value: bytes.Clone(PrefixEnd(changeKey(shard, 0)[:len(changePrefix)+2]))}
}
