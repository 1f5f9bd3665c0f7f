package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Change log. Every batch that makes replicated records of a shard visible
// here (a coordinator's commit, a replica's commit of a pending write, a
// roll-forward, a sync or repair page: commitWrite and ApplyVersioned)
// adds, once its commit returned, one entry per shard it touched:
//
//	(shard, seq)  ->  the keys it wrote
//
// seq is store-wide and grows with every batch. A catch-up that copied a
// shard from this store up to a head (ChangeHead) later asks only for the
// keys of the entries after it (ScanChanges) and copies their current
// records: everything that became visible here since. Only the takeover and
// returning-replica catch-ups use it; anti-entropy stays on digests.
//
// The log is held in memory, not in Pebble. It never outlives the process
// anyway (a restart starts a new log with a new random incarnation, so a
// cursor taken from an earlier run, or from another store, never matches
// and its holder falls back to the digest comparison), so writing it to the
// write-ahead log, the memtable and the tables bought nothing but cost: an
// entry carried every key of its batch again, about a third of the bytes a
// message wrote, flushed and compacted. It is safe for the same reason the
// Pebble log was: ChangeHead stays below every batch still in flight, and a
// batch adds its entry after its commit and before it leaves the flight
// (changeTicket), so nothing at or below a head can still appear; a batch
// that failed adds none.
//
// The entries' keys are appended to chunks of changeChunkSize bytes mapped
// outside the Go heap, and each shard's list of entries points into them
// by offset, holding no pointer: the garbage collector neither scans the
// log nor counts it (a heap twice its size would be the collector's due),
// so its memory is what it holds. Bounds: TrimChanges (the sweeper) drops entries older than
// ChangeLogMaxAge or more than ChangeLogMaxEntries batches behind the head;
// and whenever the chunks and lists exceed ChangeLogMaxBytes, the oldest
// chunk goes at once. A cursor below the trimmed seq falls back to digests.
//
// Earlier builds kept the log in Pebble above every shard's keys, under
// changePrefix; Open deletes what such a build left there.
var changePrefix = []byte("\xff\xff\xffimcluster.changes/")

// Change log bounds: entries older than ChangeLogMaxAge, or more than
// ChangeLogMaxEntries batches behind the newest, are dropped by
// TrimChanges; beyond ChangeLogMaxBytes of memory the oldest are dropped at
// once. A message's entry holds its keys less the prefix each shares with
// the one before it: about 300 bytes, so the log reaches back about 70 s at
// 3,000 messages/s.
const (
	ChangeLogMaxAge     = 5 * time.Minute
	ChangeLogMaxEntries = 1 << 20
	ChangeLogMaxBytes   = 64 << 20
)

// changeChunkSize is the size of the chunks holding the entries' keys; the
// byte bound drops one chunk at a time.
const changeChunkSize = 256 << 10

// changeEntrySize is the size of a changeEntry in a shard's list.
const changeEntrySize = 24

// ChangeCursor names a position in a store's change log: the log of the
// run Incarnation, up to and including Seq.
type ChangeCursor struct {
	Incarnation, Seq uint64
}

// ErrChangesTrimmed reports that the change log no longer reaches back to
// a cursor (another run's, or trimmed): the caller compares digests.
var ErrChangesTrimmed = errors.New("store: the change log does not reach back to the cursor")

// changeLog is the store's change log. mu guards everything but
// incarnation, maxBytes and chunkSize (set at Open); it is a leaf lock.
type changeLog struct {
	incarnation uint64
	maxBytes    int
	chunkSize   int

	mu sync.Mutex
	// next is the seq of the next batch; inflight lists the seqs of the
	// batches being committed, in increasing order: ChangeHead is below
	// the first of them, so a cursor never skips a batch committed late.
	next     uint64
	inflight []uint64
	// trimmed is the highest seq dropped (0: none).
	trimmed uint64
	// shards holds each shard's entries in seq order; chunks the keys they
	// point to, oldest first (the last one is filled), chunks[0] having
	// the id firstChunk; bytes is the chunks' and the lists' capacity;
	// entries counts the entries held.
	shards     map[uint16][]changeEntry
	chunks     []*changeChunk
	firstChunk uint64
	bytes      int
	entries    int
	closed     bool
	// marks are (time, head) samples of TrimChanges, oldest first: the
	// age bound trims through the newest mark older than the age.
	marks []changeMark
}

// changeEntry is one batch's entry of one shard: its keys are n bytes at
// off in chunk, each without the shard prefix and encoded against the one
// before it as uvarint(shared prefix length), uvarint(rest length), rest.
type changeEntry struct {
	seq    uint64
	chunk  uint64
	off, n uint32
}

// changeChunk holds entries' keys; buf is only ever appended to, so the
// bytes of an entry never change once written. maxSeq is its newest
// entry's seq. mapped reports a buf mapped outside the heap (free unmaps
// it): nothing may refer to its bytes once the chunk is dropped, so they
// are copied, never shared, out of the log.
type changeChunk struct {
	buf    []byte
	maxSeq uint64
	mapped bool
}

// newChangeChunk returns an empty chunk of size bytes, mapped outside the
// heap (on the heap if the mapping fails).
func newChangeChunk(size int) *changeChunk {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return &changeChunk{buf: make([]byte, 0, size)}
	}
	return &changeChunk{buf: b[:0], mapped: true}
}

// free releases the chunk's memory.
func (ch *changeChunk) free() {
	if ch.mapped {
		_ = syscall.Munmap(ch.buf[:cap(ch.buf)])
	}
	ch.buf = nil
}

type changeMark struct {
	at   time.Time
	head uint64
}

// openChanges discards what an earlier build left of its change log in
// Pebble and starts this run's log.
func (s *Store) openChanges() error {
	end := PrefixEnd(changePrefix)
	if err := s.db.DeleteRange(changePrefix, end, pebble.Sync); err != nil {
		return fmt.Errorf("store: clear the change log: %w", err)
	}
	var inc [8]byte
	_, _ = rand.Read(inc[:]) // never fails
	s.changes = changeLog{incarnation: binary.BigEndian.Uint64(inc[:]) | 1, maxBytes: ChangeLogMaxBytes,
		chunkSize: changeChunkSize, next: 1, shards: map[uint16][]changeEntry{}}
	return nil
}

// logChanges takes the change-log sequence of a batch that makes the
// versioned records ops set visible. The caller commits the batch, calls
// the ticket's commit if that succeeded (which adds its entries, one per
// shard), and then its done, whatever the outcome. It is the one hook of
// the commit paths.
func (s *Store) logChanges(ops []Op) (changeTicket, error) {
	first := slices.IndexFunc(ops, func(op Op) bool { return op.Kind == OpSet })
	if first < 0 {
		return changeTicket{}, nil
	}
	if _, err := ShardOf(ops[first].Key); err != nil {
		return changeTicket{}, err
	}
	c := &s.changes
	t := changeTicket{c: c, ops: ops[first:]}
	c.mu.Lock()
	t.seq = c.next
	c.next++
	c.inflight = append(c.inflight, t.seq)
	c.mu.Unlock()
	return t, nil
}

// appendChangeKey appends key (without its shard) to an entry's keys,
// encoded against prev, the key before it.
func appendChangeKey(enc, prev, key []byte) []byte {
	n := 0
	for n < len(prev) && n < len(key) && prev[n] == key[n] {
		n++
	}
	enc = binary.AppendUvarint(enc, uint64(n))
	enc = binary.AppendUvarint(enc, uint64(len(key)-n))
	return append(enc, key[n:]...)
}

// decodeChangeKeys decodes an entry's keys of shard, each whole again,
// into buf and keys (both reused; keys alias buf).
func decodeChangeKeys(shard uint16, enc, buf []byte, keys [][]byte) ([]byte, [][]byte, error) {
	// First pass: check the encoding and size buf, so that the second
	// never moves it under the keys already decoded.
	need, prevLen := 0, 0
	for p := enc; len(p) > 0; {
		shared, w1 := binary.Uvarint(p)
		if w1 <= 0 {
			return buf, keys, ErrCorruptValue
		}
		rest, w2 := binary.Uvarint(p[w1:])
		if w2 <= 0 || rest > uint64(len(p)-w1-w2) || shared > uint64(prevLen) {
			return buf, keys, ErrCorruptValue
		}
		prevLen = int(shared) + int(rest)
		need += 2 + prevLen
		p = p[w1+w2+int(rest):]
	}
	if cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	buf, keys = buf[:0], keys[:0]
	var prev []byte
	for len(enc) > 0 {
		shared, w1 := binary.Uvarint(enc)
		rest, w2 := binary.Uvarint(enc[w1:])
		b := len(buf)
		buf = binary.BigEndian.AppendUint16(buf, shard)
		buf = append(buf, prev[:shared]...)
		buf = append(buf, enc[w1+w2:w1+w2+int(rest)]...)
		keys = append(keys, buf[b:len(buf):len(buf)])
		prev = buf[b+2:]
		enc = enc[w1+w2+int(rest):]
	}
	return buf, keys, nil
}

// changeTicket is a batch's sequence in the change log, in flight until
// done, and the ops whose keys its entries list. The zero ticket (a batch
// that makes no versioned record visible) does nothing.
type changeTicket struct {
	c   *changeLog
	seq uint64
	ops []Op
}

// commit adds the batch's entries: call it once its commit succeeded, and
// before done. An entry of a shard whose copy was deleted while the batch
// was in flight is added all the same: its keys are then missing or
// written again, and a catch-up skips a missing key (more keys than
// changed is safe; fewer would not be).
func (t changeTicket) commit() {
	if t.c == nil {
		return
	}
	shards := []uint16{binary.BigEndian.Uint16(t.ops[0].Key)}
	for _, op := range t.ops[1:] {
		if sh, err := ShardOf(op.Key); err == nil && op.Kind == OpSet && sh != shards[0] {
			shards = shardsOf(t.ops) // rare: a batch of several shards
			break
		}
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || t.seq <= c.trimmed {
		return // trimmed past already (by the byte bound)
	}
	for _, sh := range shards {
		c.addLocked(sh, t.seq, t.ops)
	}
	for c.bytes > c.maxBytes && len(c.chunks) > 1 {
		c.dropChunkLocked()
	}
}

// addLocked adds the entry of shard at seq listing the keys ops set in it.
func (c *changeLog) addLocked(shard uint16, seq uint64, ops []Op) {
	bound := 0
	for _, op := range ops {
		if op.Kind == OpSet && len(op.Key) >= 2 && binary.BigEndian.Uint16(op.Key) == shard {
			bound += 2*binary.MaxVarintLen64 + len(op.Key) - 2
		}
	}
	var ch *changeChunk
	if n := len(c.chunks); n > 0 && cap(c.chunks[n-1].buf)-len(c.chunks[n-1].buf) >= bound {
		ch = c.chunks[n-1]
	} else {
		ch = newChangeChunk(max(c.chunkSize, bound))
		c.chunks = append(c.chunks, ch)
		c.bytes += cap(ch.buf)
	}
	off := len(ch.buf)
	var prev []byte
	for _, op := range ops {
		if op.Kind == OpSet && len(op.Key) >= 2 && binary.BigEndian.Uint16(op.Key) == shard {
			ch.buf, prev = appendChangeKey(ch.buf, prev, op.Key[2:]), op.Key[2:]
		}
	}
	ch.maxSeq = max(ch.maxSeq, seq)
	e := changeEntry{seq: seq, chunk: c.firstChunk + uint64(len(c.chunks)) - 1, off: uint32(off), n: uint32(len(ch.buf) - off)}
	list := c.shards[shard]
	i := len(list)
	for i > 0 && list[i-1].seq > seq {
		i--
	}
	before := cap(list)
	list = slices.Insert(list, i, e)
	c.bytes += (cap(list) - before) * changeEntrySize
	c.shards[shard] = list
	c.entries++
}

// dropChunkLocked drops the oldest chunk and every entry at or below its
// newest seq (all of its entries, and entries of later chunks that no
// cursor can ask for any more).
func (c *changeLog) dropChunkLocked() {
	ch := c.chunks[0]
	c.chunks[0] = nil
	c.chunks = c.chunks[1:]
	c.firstChunk++
	c.bytes -= cap(ch.buf)
	c.trimmed = max(c.trimmed, ch.maxSeq)
	ch.free()
	for sh := range c.shards {
		c.dropShardThroughLocked(sh, c.trimmed)
	}
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

// dropShardThroughLocked drops shard's entries up to and including seq
// through (their keys stay in their chunk until it is dropped). Caller
// holds mu.
func (c *changeLog) dropShardThroughLocked(shard uint16, through uint64) {
	list := c.shards[shard]
	n := 0
	for n < len(list) && list[n].seq <= through {
		n++
	}
	if n == 0 {
		return
	}
	c.entries -= n
	if n == len(list) {
		c.bytes -= cap(list) * changeEntrySize
		delete(c.shards, shard)
		return
	}
	c.shards[shard] = list[:copy(list, list[n:])]
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
	return ChangeCursor{Incarnation: c.incarnation, Seq: c.headLocked()}
}

func (c *changeLog) headLocked() uint64 {
	if len(c.inflight) > 0 {
		return c.inflight[0] - 1
	}
	return c.next - 1
}

// changeScanChunk is how many entries ScanChanges copies under the lock at
// a time.
const changeScanChunk = 256

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
	type scanned struct {
		seq    uint64
		off, n int
	}
	var (
		chunk []scanned
		raw   []byte
		buf   []byte
		keys  [][]byte
		err   error
	)
	for after := from.Seq; after < upTo; {
		// Copied in chunks (keys and all: a dropped chunk is unmapped), so
		// fn runs without the lock. A trim between two chunks may have
		// dropped entries after the last one read: checked under the same
		// lock as the copy.
		c.mu.Lock()
		if after < c.trimmed {
			c.mu.Unlock()
			return ErrChangesTrimmed
		}
		list := c.shards[shard]
		i, _ := slices.BinarySearchFunc(list, after+1, cmpEntrySeq)
		j, _ := slices.BinarySearchFunc(list, upTo+1, cmpEntrySeq)
		chunk, raw = chunk[:0], raw[:0]
		for _, e := range list[i:min(j, i+changeScanChunk)] {
			b := c.chunks[e.chunk-c.firstChunk].buf
			chunk = append(chunk, scanned{seq: e.seq, off: len(raw), n: int(e.n)})
			raw = append(raw, b[e.off:e.off+e.n]...)
		}
		c.mu.Unlock()
		if len(chunk) == 0 {
			return nil
		}
		for _, e := range chunk {
			buf, keys, err = decodeChangeKeys(shard, raw[e.off:e.off+e.n], buf, keys)
			if err != nil {
				return fmt.Errorf("%w: change log entry %d of shard %d", err, e.seq, shard)
			}
			if more, err := fn(e.seq, keys); err != nil || !more {
				return err
			}
			after = e.seq
		}
	}
	return nil
}

func cmpEntrySeq(e changeEntry, seq uint64) int {
	switch {
	case e.seq < seq:
		return -1
	case e.seq > seq:
		return 1
	}
	return 0
}

// ChangedSince reports whether shard has a change-log entry after from
// (true as well when from is another run's cursor or trimmed past).
func (s *Store) ChangedSince(shard uint16, from ChangeCursor) (bool, error) {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if from.Incarnation != c.incarnation || from.Seq < c.trimmed {
		return true, nil
	}
	list := c.shards[shard]
	i, _ := slices.BinarySearchFunc(list, from.Seq+1, cmpEntrySeq)
	return i < len(list) && list[i].seq <= c.headLocked(), nil
}

// TrimChanges drops the change-log entries older than maxAge (as sampled
// by earlier calls: call it periodically) or more than maxEntries batches
// behind the head, and returns the highest seq dropped.
func (s *Store) TrimChanges(now time.Time, maxAge time.Duration, maxEntries uint64) (uint64, error) {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
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
	if through <= c.trimmed {
		return through, nil
	}
	c.trimmed = through
	for sh := range c.shards {
		c.dropShardThroughLocked(sh, through)
	}
	for len(c.chunks) > 0 && c.chunks[0].maxSeq <= through {
		c.dropChunkLocked()
	}
	return through, nil
}

// close frees the log's memory (the store is closing): later scans find
// it trimmed, later commits add nothing.
func (c *changeLog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.chunks {
		ch.free()
	}
	c.chunks, c.shards, c.bytes, c.entries = nil, map[uint16][]changeEntry{}, 0, 0
	c.trimmed, c.closed = c.next, true
}

// collectors returns the change log's metrics.
func (c *changeLog) collectors() []prometheus.Collector {
	locked := func(f func() float64) func() float64 {
		return func() float64 {
			c.mu.Lock()
			defer c.mu.Unlock()
			return f()
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_change_log_bytes",
			Help: "Memory held by the store's change log (the chunks holding its entries' keys and the lists of its entries)."},
			locked(func() float64 { return float64(c.bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_change_log_entries",
			Help: "Entries (one per batch and shard) held by the store's change log."},
			locked(func() float64 { return float64(c.entries) })),
	}
}

// dropShardChanges drops shard's whole change log (its copy is deleted: a
// catch-up from this store must not take the rest for the whole shard; the
// next copy logs every record it receives).
func (s *Store) dropShardChanges(shard uint16) {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropShardThroughLocked(shard, c.next)
}
