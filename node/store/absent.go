package store

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// The absence filter answers "this de-duplication key was never written"
// from memory. Every stored send with a dt looks its key (FamDedup) up and
// nearly always misses; a Pebble miss still seeks the memtables and the
// levels. Per data shard, a Bloom filter of the FamDedup keys the store
// holds lets Get answer ErrNotFound without Pebble when the filter lacks
// the key. A key the filter holds (present, or a false positive), and any
// key of a shard whose filter is not ready, is read from Pebble.
//
// A filter never misses a key Pebble holds, for two reasons:
//
//   - It is fed by every write: Store.commit, through which every commit of
//     shard keys goes (the engine's writes, replicated Prepares and their
//     commit notices, roll-forwards, catch-up and anti-entropy copies),
//     adds every FamDedup key the batch writes before the batch is
//     committed to Pebble (an added key whose commit fails is a false
//     positive, which is safe). Filters are never told of deletions: a
//     deleted key left in a filter is a false positive too.
//   - A filter is built (build) by registering it first, so that every
//     later commit feeds it, then waiting for the commits already past
//     registration's check (commitMu), then scanning the shard's FamDedup
//     keys in a Pebble iterator opened after those commits: a key is either
//     in the scan's view or written by a commit that fed the filter.
//
// The scan leaves out whole-record tombstones more than tombstoneMargin
// older than the store's clock. Reading such a tombstone only moves the
// reader's clock past its version (replica's localGet); a later write of
// the key takes a version from a clock at or above the wall clock, which is
// past the tombstone's already (unless the wall clock steps back by more
// than the margin), so the write wins over the tombstone without the read.
// Retention's sweep leaves a tombstone per expired key: without this rule
// a filter would keep every key ever written.
//
// Memory is bounded (Config.AbsentFilterSize, all shards together): a
// filter grows by adding a Bloom layer twice the size of the last one; a
// layer that would take the filters past the bound drops the shard's
// filter instead, and the shard's lookups read Pebble. A dropped shard is
// built again once commits deleted a quarter of the keys it held and
// rebuildDelay passed since (a retention sweep, whose tombstones a build
// made then leaves out), and a shard whose range was deleted (DeleteShard,
// a conversation's expiry) counts all its keys deleted.
type absentFilter struct {
	limit int64
	now   func() time.Time

	// commitMu orders builds against commits: a commit holds it shared
	// from feeding the filters to the end of its Pebble commit; a build
	// takes it exclusively, briefly, to register its filter, so the scan
	// it starts afterwards sees every commit that did not feed it.
	commitMu sync.RWMutex
	// mu guards shards and the filters' layers; a leaf, never held across
	// a Pebble call.
	mu     sync.Mutex
	shards map[uint16]*absentShard
	// queue holds the shards waiting for a build (at most one entry per
	// shard: bounded by the 65,536 shards); wake (one slot) wakes the
	// builder.
	queue []uint16
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}

	usedBytes atomic.Int64
	absent    atomic.Uint64 // lookups answered without Pebble
	present   atomic.Uint64 // lookups the filter may hold (read from Pebble)
	notReady  atomic.Uint64 // lookups of a shard without a ready filter
	dropped   atomic.Uint64 // filters dropped at the memory bound

	// testHookBuild, when set (tests only), runs once in build's scan, at
	// its first key (the scan's view is fixed then).
	testHookBuild func()
}

// absentShard is the state of one data shard's filter.
type absentShard struct {
	ready    *bloomLayers // answers lookups; nil: not ready
	building *bloomLayers // fed by commits while a build scans; nil: none
	queued   bool
	// keys counts the keys added to ready (or building); removed the
	// FamDedup deletions commits made since; removedAt the last one.
	keys, removed int
	removedAt     time.Time
	// dropped: the filter hit the memory bound; keys is then the count it
	// had.
	dropped bool
}

// DefaultAbsentFilterSize is the absence filter's bound when
// Config.AbsentFilterSize is zero.
const DefaultAbsentFilterSize = 64 << 20

// tombstoneMargin is how far behind the store's clock a tombstone's
// version must be for a build to leave it out (see absentFilter).
const tombstoneMargin = time.Minute

// rebuildDelay is how long a dropped filter waits after the last deletion
// before it is built again: the sweep's tombstones are then past
// tombstoneMargin.
const rebuildDelay = 2 * tombstoneMargin

func newAbsentFilter(limit int64) *absentFilter {
	return &absentFilter{limit: limit, now: time.Now, shards: map[uint16]*absentShard{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// dedupShard returns key's data shard and true when key is a FamDedup key.
func dedupShard(key []byte) (uint16, bool) {
	if !cacheable(key) {
		return 0, false
	}
	i := bytes.Index(key[2:], []byte{0, 1}) // the app's terminator (escape)
	if i < 0 || len(key) <= 2+i+2 || Family(key[2+i+2]) != FamDedup {
		return 0, false
	}
	return binary.BigEndian.Uint16(key), true
}

// lookup reports true when key is a FamDedup key the store does not hold.
// A shard without a filter is queued for a build.
func (a *absentFilter) lookup(key []byte) bool {
	shard, ok := dedupShard(key)
	if !ok {
		return false
	}
	h := xxhash.Sum64(key)
	a.mu.Lock()
	sh := a.shards[shard]
	if sh == nil || sh.ready == nil {
		a.wantLocked(shard, sh)
		a.mu.Unlock()
		a.notReady.Add(1)
		return false
	}
	has := sh.ready.has(h)
	a.mu.Unlock()
	if has {
		a.present.Add(1)
		return false
	}
	a.absent.Add(1)
	return true
}

// wantLocked queues a build of shard when it has none ready or under way,
// and a dropped filter only once enough of its keys were deleted. a.mu is
// held.
func (a *absentFilter) wantLocked(shard uint16, sh *absentShard) {
	if sh == nil {
		sh = &absentShard{}
		a.shards[shard] = sh
	}
	if sh.queued || sh.building != nil || sh.ready != nil {
		return
	}
	if sh.dropped && (sh.removed*4 < sh.keys || a.now().Sub(sh.removedAt) < rebuildDelay) {
		return
	}
	sh.queued = true
	a.queue = append(a.queue, shard)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// begin feeds the filters with the FamDedup keys ops write (see
// batchWrites) and takes commitMu shared; the caller commits to Pebble and
// then calls end.
func (a *absentFilter) begin(ops []Op) {
	a.commitMu.RLock()
	for _, op := range ops {
		if op.Kind == OpDeleteRange {
			a.deletedRange(op.Key, op.Value)
			continue
		}
		shard, ok := dedupShard(op.Key)
		if !ok {
			continue
		}
		if op.Kind == OpDelete || isTombstone(op.Value) {
			a.deleted(shard)
		}
		if op.Kind != OpDelete { // a deletion removes the key: nothing to add
			a.add(shard, xxhash.Sum64(op.Key))
		}
	}
}

// end releases what begin took.
func (a *absentFilter) end() { a.commitMu.RUnlock() }

// isTombstone reports whether rec is a whole-record tombstone (a versioned
// record: a FamDedup value the engine writes is at least 16 bytes).
func isTombstone(rec []byte) bool { return len(rec) == versionHeader && rec[0] == VersionTombstone }

// add adds hash h to shard's filters.
func (a *absentFilter) add(shard uint16, h uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sh := a.shards[shard]
	if sh == nil {
		return
	}
	for _, f := range []*bloomLayers{sh.ready, sh.building} {
		if f != nil && !a.addLocked(f, h) {
			a.dropLocked(sh)
			return
		}
	}
	if sh.ready != nil || sh.building != nil {
		sh.keys++
	}
}

// addLocked adds h to f, growing it; false when a new layer would take the
// filters past the bound. a.mu is held.
func (a *absentFilter) addLocked(f *bloomLayers, h uint64) bool {
	if f.full() {
		size := f.nextLayerBytes()
		if a.usedBytes.Load()+size > a.limit {
			return false
		}
		f.grow()
		a.usedBytes.Add(size)
	}
	f.add(h)
	return true
}

// dropLocked drops shard's filters at the memory bound. a.mu is held.
func (a *absentFilter) dropLocked(sh *absentShard) {
	for _, f := range []*bloomLayers{sh.ready, sh.building} {
		if f != nil {
			a.usedBytes.Add(-f.bytes())
		}
	}
	sh.ready, sh.building = nil, nil
	sh.dropped, sh.removed = true, 0
	a.dropped.Add(1)
}

// deleted counts a deletion of one of shard's FamDedup keys.
func (a *absentFilter) deleted(shard uint16) {
	a.mu.Lock()
	if sh := a.shards[shard]; sh != nil {
		sh.removed++
		sh.removedAt = a.now()
	}
	a.mu.Unlock()
}

// deletedRange counts every key of the data shards of [start, end)
// deleted (their filters keep the keys: false positives).
func (a *absentFilter) deletedRange(start, end []byte) {
	if !cacheable(start) {
		return
	}
	a.mu.Lock()
	for g := int(dataGroup(start)); g <= int(dataGroup(end)) && g <= 0xffff; g++ {
		if sh := a.shards[uint16(g)]; sh != nil {
			sh.removed = max(sh.removed, sh.keys)
			sh.removedAt = a.now()
		}
		if g-int(dataGroup(start)) > maxRangeGroups {
			break
		}
	}
	a.mu.Unlock()
}

// run builds the queued shards' filters until close.
func (a *absentFilter) run(s *Store) {
	defer close(a.done)
	for {
		select {
		case <-a.stop:
			return
		case <-a.wake:
		}
		for {
			a.mu.Lock()
			if len(a.queue) == 0 {
				a.mu.Unlock()
				break
			}
			shard := a.queue[0]
			a.queue = a.queue[1:]
			a.mu.Unlock()
			a.build(s, shard)
			select {
			case <-a.stop:
				return
			default:
			}
		}
	}
}

// close stops the builder.
func (a *absentFilter) close() {
	close(a.stop)
	<-a.done
}

// build builds shard's filter: register it (commits feed it from then on),
// wait for the commits that did not see it, scan the shard's FamDedup keys
// and make it the shard's ready filter, unless it hit the memory bound.
func (a *absentFilter) build(s *Store, shard uint16) {
	f := &bloomLayers{}
	a.commitMu.Lock()
	a.mu.Lock()
	sh := a.shards[shard]
	sh.queued = false
	sh.building, sh.keys, sh.removed, sh.dropped = f, 0, 0, false
	a.mu.Unlock()
	a.commitMu.Unlock()
	cutoff := versionOf(a.now().Add(-tombstoneMargin))
	err := scanDedup(s.db, shard, func(k, rec []byte) bool {
		if hook := a.testHookBuild; hook != nil {
			a.testHookBuild = nil
			hook()
		}
		if isTombstone(rec) && binary.BigEndian.Uint64(rec[1:]) < cutoff {
			return true
		}
		select {
		case <-a.stop:
			return false // Close: the filter is abandoned below
		default:
		}
		h := xxhash.Sum64(k)
		a.mu.Lock()
		defer a.mu.Unlock()
		if sh.building != f {
			return false // dropped at the bound
		}
		if !a.addLocked(f, h) {
			a.dropLocked(sh)
			return false
		}
		sh.keys++
		return true
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	if sh.building != f {
		return
	}
	sh.building = nil
	stopped := false
	select {
	case <-a.stop:
		stopped = true
	default:
	}
	if err != nil || stopped {
		// Not ready: the next lookup queues it again.
		a.usedBytes.Add(-f.bytes())
		return
	}
	if sh.ready != nil {
		a.usedBytes.Add(-sh.ready.bytes())
	}
	sh.ready = f
}

// scanDedup calls fn for every FamDedup key of shard and its record, app
// by app (seeking past each app's other families), until fn returns false.
func scanDedup(db *pebble.DB, shard uint16, fn func(k, rec []byte) bool) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: ShardPrefix(shard), UpperBound: ShardEnd(shard)})
	if err != nil {
		return err
	}
	defer func() { _ = it.Close() }()
	for ok := it.First(); ok; {
		k := it.Key()
		i := bytes.Index(k[2:], []byte{0, 1})
		if i < 0 {
			ok = it.Next()
			continue
		}
		app := bytes.Clone(k[:2+i+2])
		prefix := append(bytes.Clone(app), byte(FamDedup))
		if bytes.Compare(k, prefix) < 0 {
			ok = it.SeekGE(prefix)
		}
		for ; ok && bytes.HasPrefix(it.Key(), prefix); ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			if !fn(it.Key(), v) {
				return nil
			}
		}
		if end := PrefixEnd(app); end != nil {
			ok = it.SeekGE(end)
		} else {
			ok = false
		}
	}
	return it.Error()
}

// collectors returns the filter's metrics.
func (a *absentFilter) collectors() []prometheus.Collector {
	lookups := func(result string, n *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_absent_lookups_total",
			Help:        "Look-ups of de-duplication keys by the absence filter's answer: absent (no Pebble read), maybe_present (read from Pebble), not_ready (the shard has no filter: read from Pebble).",
			ConstLabels: prometheus.Labels{"result": result}}, func() float64 { return float64(n.Load()) })
	}
	return []prometheus.Collector{
		lookups("absent", &a.absent), lookups("maybe_present", &a.present), lookups("not_ready", &a.notReady),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imnode_store_absent_dropped_total",
			Help: "Shard absence filters dropped at the memory bound (--store-dedup-filter-mib)."},
			func() float64 { return float64(a.dropped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imnode_store_absent_bytes",
			Help: "Bytes held by the store's absence filters of de-duplication keys."},
			func() float64 { return float64(a.usedBytes.Load()) }),
	}
}

// bloomLayers is a growing Bloom filter: layers of split-block filters,
// each holding twice the keys of the one before; a key is added to the
// last layer and looked up in all.
type bloomLayers struct {
	layers []bloomLayer
}

// bloomLayer is a split-block Bloom filter: a key sets one bit in each of
// the eight 32-bit words of one 256-bit block, about 1% false positives at
// bloomBitsPerKey.
type bloomLayer struct {
	blocks   [][8]uint32
	keys, at int
}

const (
	bloomBitsPerKey = 12
	bloomFirstKeys  = 4096
)

var bloomSalt = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

func (f *bloomLayers) full() bool {
	n := len(f.layers)
	return n == 0 || f.layers[n-1].at >= f.layers[n-1].keys
}

// nextKeys is the capacity of the next layer.
func (f *bloomLayers) nextKeys() int { return bloomFirstKeys << len(f.layers) }

func layerBlocks(keys int) int { return (keys*bloomBitsPerKey + 255) / 256 }

func (f *bloomLayers) nextLayerBytes() int64 { return int64(layerBlocks(f.nextKeys())) * 32 }

func (f *bloomLayers) grow() {
	keys := f.nextKeys()
	f.layers = append(f.layers, bloomLayer{blocks: make([][8]uint32, layerBlocks(keys)), keys: keys})
}

func (f *bloomLayers) bytes() int64 {
	var n int64
	for _, l := range f.layers {
		n += int64(len(l.blocks)) * 32
	}
	return n
}

func (f *bloomLayers) add(h uint64) {
	l := &f.layers[len(f.layers)-1]
	b := &l.blocks[(h>>32)*uint64(len(l.blocks))>>32]
	for i, salt := range bloomSalt {
		b[i] |= 1 << ((uint32(h) * salt) >> 27)
	}
	l.at++
}

func (f *bloomLayers) has(h uint64) bool {
	for li := range f.layers {
		l := &f.layers[li]
		b := &l.blocks[(h>>32)*uint64(len(l.blocks))>>32]
		hit := true
		for i, salt := range bloomSalt {
			if b[i]&(1<<((uint32(h)*salt)>>27)) == 0 {
				hit = false
				break
			}
		}
		if hit {
			return true
		}
	}
	return false
}

// openAbsent creates the absence filter (unless cfg disables it), registers
// its metrics and starts its builder, which Close stops.
func (s *Store) openAbsent(cfg Config) error {
	size := cfg.AbsentFilterSize
	if size == 0 {
		size = DefaultAbsentFilterSize
	}
	if size < 0 {
		return nil
	}
	a := newAbsentFilter(size)
	if err := register(cfg.Registerer, a.collectors()); err != nil {
		return err
	}
	s.absent = a
	go a.run(s)
	return nil
}
