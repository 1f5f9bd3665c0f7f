package conversation

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/node/limit"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// The outbox: a command writes its own shard and nothing else under its
// stripe lock. Its writes to other shards (the members' conversation index
// and read state, reliable notifications, the unique index of an imported
// conversation) become outbox entries (store.FamOutbox) in the
// conversation's shard, committed in the same atomic batch as the
// conversation's own records (commitConv). After the stripe lock is
// released the entries are applied, each as one batch at its target shard's
// coordinator (through store.KV), and then deleted: in the batch of the
// conversation's next commit, by its runner's next round (the drainer
// starts one within Config.OutboxInterval), or when the engine stops.
//
// Order: a conversation's entries carry increasing sequence numbers (its
// commands are serialized by its stripe) and one goroutine at a time
// applies a conversation's entries, in order, stopping at the first that
// fails; so a member's index add and a later remove reach the member's
// shard in that order.
//
// Idempotence: an entry applied twice (its apply succeeded but the deletion
// did not: a crash, a lost answer) writes the same values again. Every
// effect is a value, never an increment: index records and notifications
// are sets of fixed keys (a notification's key carries its serverTs and the
// writing process's nonce), removals are deletions, and a joining member's
// read state carries the read pointer the join computed. Unread counts are
// never stored; they are counted from the messages after the read pointer.
// A replay must not set a read pointer back after the member moved it: an
// entry that may have been applied before (any entry but the ones this
// process wrote and tries for the first time, see outbox.fresh) drops a
// member's read state when the member's index entry it adds exists already,
// or when the stored state changed at or after the command that wrote the
// entry (a join's read pointer, SetUnread's of an import; see
// dropReplayedStates).
//
// Who applies: the command that wrote the entries starts a runner for its
// conversation after releasing the lock and waits at most Config.OutboxWait
// until the runner has applied them (not for their deletion) (a down or slow target shard delays the answer by that much, no
// more; the command succeeded once its own shard committed). At most
// maxOutboxRunners conversations are applied at once; when all are busy the
// entries wait for the drainer. The drainer (outboxLoop, started and
// stopped with the engine) scans the outbox of every shard this node
// coordinates each Config.OutboxInterval and starts runners for the
// conversations with entries: it retries failed applies and, after a lease
// moves, applies what the previous coordinator left. A runner checks before
// each entry that its node still coordinates the conversation's shard and
// stops when it does not (errOutboxMoved), so an old coordinator does not
// go on applying entries while the new one applies them and its own later
// ones.
//
// Versions: an entry's writes are versioned when its command runs, not
// when they are applied. Under the stripe lock commitConv takes one version
// per op from the cluster KV's clock (versioner) and puts the first in the
// entry's key after its sequence; applyEntry gives op i the version first+i
// (store.Op.Version), which the target shard's coordinator keeps. So
// last-writer-wins orders effects on a key by command, whoever applies them
// and however late: an apply still under way on the old coordinator when
// the lease moves, or a replay after a restart (same key, same versions),
// loses to the new coordinator's later effects. The new coordinator's
// versions are above the old one's: its clock observed the versions of the
// conversation's records, committed after the entry's versions were taken,
// before it could run a command on them (it replicates the shard, and
// catch-up and reads observe versions). An entry without a version in its
// key (written by an earlier build, or on the plain Store, which has no
// versions) is versioned when applied.

const (
	// maxOutboxRunners bounds the conversations whose outbox entries are
	// being applied at once on this node.
	maxOutboxRunners = 64
	// maxFreshEntries bounds outbox.fresh; entries beyond it are applied
	// as possible replays (one read more per joining member).
	maxFreshEntries = 1 << 16
	// outboxPage is how many entries a runner reads at once.
	outboxPage = 64
)

// versioner is implemented by the cluster KV (node/replica): NewVersions
// returns the first of n consecutive versions of its hybrid logical clock.
type versioner interface{ NewVersions(n int) uint64 }

// convRef names a conversation.
type convRef struct{ app, cid string }

// outbox tracks the conversations whose entries are being applied.
type outbox struct {
	// mu guards running, fresh and applied (a leaf; see node/LOCKING.md).
	mu      sync.Mutex
	running map[convRef]*outboxRun
	// fresh holds the keys of the entries this process wrote and has not
	// tried to apply yet: their first apply cannot be a replay.
	fresh map[string]struct{}
	// applied holds, per conversation, the entries applied and not deleted
	// yet: the conversation's next commit deletes them in its own batch
	// (commitConv), or the next round of its runner does. nApplied counts
	// them, at most maxFreshEntries; beyond it a runner deletes at once.
	applied  map[convRef][][]byte
	nApplied int
	// diskLowLog paces the warnings of rounds refused for a full disk;
	// diskLowQuiet counts those refused and not logged since
	// (logOutboxResult).
	diskLowLog   limit.Interval
	diskLowQuiet atomic.Int64
}

// outboxRun is the runner of one conversation. next is closed when the
// round after the current one ends; again asks for that round.
type outboxRun struct {
	next  chan struct{}
	again bool
}

func (o *outbox) init() {
	o.running = map[convRef]*outboxRun{}
	o.fresh = map[string]struct{}{}
	o.applied = map[convRef][][]byte{}
}

// deferDelete records entries of ref as applied; it reports false when
// too many are recorded (the caller deletes them at once).
func (o *outbox) deferDelete(ref convRef, keys [][]byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.nApplied+len(keys) > maxFreshEntries {
		return false
	}
	o.applied[ref] = append(o.applied[ref], keys...)
	o.nApplied += len(keys)
	return true
}

// takeApplied returns and forgets ref's applied entries.
func (o *outbox) takeApplied(ref convRef) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := o.applied[ref]
	delete(o.applied, ref)
	o.nApplied -= len(keys)
	return keys
}

// wrote records entries written by this process.
func (o *outbox) wrote(keys [][]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if len(o.fresh) < maxFreshEntries {
			o.fresh[string(k)] = struct{}{}
		}
	}
}

// firstTry reports whether the entry at key is tried for the first time
// (and forgets it: any later try may be a replay).
func (o *outbox) firstTry(key []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.fresh[string(key)]
	delete(o.fresh, string(key))
	return ok
}

// commitConv commits b, the writes of a command on conversation cid, made
// under the stripe lock st: the ops in the conversation's shard as they
// are, the others as outbox entries in the same atomic batch. It records
// the conversation on st so unlockAndDrain applies the entries after
// releasing the lock. The caller holds st.mu.
func (e *Engine) commitConv(st *stripe, app, cid string, b *store.Batch) error {
	own := e.shards.ConvShard(app, cid)
	// Entries applied since the last commit go with this one.
	done := e.outbox.takeApplied(convRef{app, cid})
	for _, k := range done {
		b.Delete(k)
	}
	shards, parts, err := store.SplitByShard(b.Ops())
	if err != nil {
		return err
	}
	local := parts[own]
	targets := slices.DeleteFunc(shards, func(s uint16) bool { return s == own })
	written := statesIn(local)
	if len(targets) == 0 {
		err = e.st.Commit(b)
		e.forgetStates(written)
		if err != nil {
			e.outbox.deferDelete(convRef{app, cid}, done)
		}
		return err
	}
	seq, err := e.lastOutboxSeq(own, app, cid)
	if err != nil {
		return err
	}
	out := e.st.NewBatch()
	if err := appendOps(out, local); err != nil {
		return err
	}
	prefix := store.OutboxKey(own, app, cid)
	clock, versioned := e.st.(versioner)
	keys := make([][]byte, 0, len(targets))
	for _, shard := range targets {
		seq++
		k := prefix.Int64(seq)
		if versioned {
			k = k.Int64(int64(clock.NewVersions(len(parts[shard])))) //nolint:gosec // versions are below 2^63 until the year 6400
		}
		out.Set(k, encodeOutboxOps(parts[shard]))
		keys = append(keys, k.Bytes())
	}
	err = e.st.Commit(out)
	e.forgetStates(written)
	if err != nil {
		e.outbox.deferDelete(convRef{app, cid}, done)
		return err
	}
	e.outbox.wrote(keys)
	st.outbox = append(st.outbox, convRef{app, cid})
	return nil
}

// appendOps adds ops to b, with their versions.
func appendOps(b *store.Batch, ops []store.Op) error {
	for _, op := range ops {
		n := len(b.Ops())
		switch op.Kind {
		case store.OpSet:
			b.Set(op.Key, op.Value)
		case store.OpDelete:
			b.Delete(op.Key)
		case store.OpDeleteRange:
			b.DeleteRange(op.Key, op.Value)
		case store.OpMergeFields:
			fields, err := mergeOpFields(op.Value)
			if err != nil {
				return err
			}
			b.MergeFields(op.Key, fields)
		default:
			return errCorruptOutbox
		}
		if op.Version != 0 && len(b.Ops()) > n {
			b.Ops()[n].Version = op.Version
		}
	}
	return nil
}

// mergeOpFields decodes the value of an OpMergeFields (the form
// store.Batch.MergeFields records: per field its uvarint name length and
// name, a tombstone byte, and for a live field its uvarint value length and
// value) back into the fields, so the op can be recorded again.
// TestOutboxMergeOpRoundTrip keeps it in step with the store.
func mergeOpFields(v []byte) ([]store.Field, error) {
	var out []store.Field
	for len(v) > 0 {
		var name, value []byte
		var ok bool
		name, v, ok = uvarintField(v)
		if !ok || len(v) == 0 {
			return nil, errCorruptOutbox
		}
		tomb := v[0]
		v = v[1:]
		if tomb == 1 {
			out = append(out, store.Field{Name: string(name), Deleted: true})
			continue
		}
		value, v, ok = uvarintField(v)
		if !ok || tomb != 0 {
			return nil, errCorruptOutbox
		}
		out = append(out, store.Field{Name: string(name), Value: value})
	}
	return out, nil
}

// lastOutboxSeq returns the sequence of the conversation's newest pending
// entry, 0 if none.
func (e *Engine) lastOutboxSeq(shard uint16, app, cid string) (int64, error) {
	var last int64
	err := e.st.ScanPrefix(store.OutboxKey(shard, app, cid).Bytes(), true, func(k, _ []byte) (bool, error) {
		var err error
		last, err = outboxSeq(k)
		return false, err
	})
	if err != nil {
		return 0, internal("read outbox", err)
	}
	return last, nil
}

// outboxSeq decodes an outbox entry key.
func outboxSeq(k []byte) (int64, error) {
	r, _, _, fam := store.ReadKey(k)
	_, _ = r.Str(), r.Str()
	seq := r.Int64()
	if err := r.Err(); err != nil || fam != store.FamOutbox {
		return 0, fmt.Errorf("%w: outbox key %x", store.ErrCorruptKey, k)
	}
	return seq, nil
}

// outboxVersion decodes the version of the first op of the entry at key k,
// 0 when the key carries none.
func outboxVersion(k []byte) uint64 {
	r, _, _, _ := store.ReadKey(k)
	_, _, _ = r.Str(), r.Str(), r.Int64()
	v := r.Int64()
	if r.Err() != nil || v <= 0 {
		return 0
	}
	return uint64(v)
}

// outboxRef decodes the conversation of an outbox entry key.
func outboxRef(k []byte) (convRef, error) {
	r, _, _, _ := store.ReadKey(k)
	ref := convRef{app: r.Str(), cid: r.Str()}
	if err := r.Err(); err != nil {
		return ref, fmt.Errorf("%w: outbox key %x", store.ErrCorruptKey, k)
	}
	return ref, nil
}

// outboxFormat is the first byte of an entry's value.
const outboxFormat = 1

// encodeOutboxOps encodes the ops of one entry: per op its kind, key and
// value, lengths as uvarints.
func encodeOutboxOps(ops []store.Op) []byte {
	v := []byte{outboxFormat}
	for _, op := range ops {
		v = append(v, byte(op.Kind))
		v = binary.AppendUvarint(v, uint64(len(op.Key)))
		v = append(v, op.Key...)
		v = binary.AppendUvarint(v, uint64(len(op.Value)))
		v = append(v, op.Value...)
	}
	return v
}

// uvarintField splits a uvarint-length-prefixed field off v.
func uvarintField(v []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return nil, v, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

var errCorruptOutbox = errors.New("conversation: corrupt outbox entry")

// errOutboxMoved stops a runner whose node no longer coordinates the
// conversation's shard: the new coordinator's drainer applies the rest.
var errOutboxMoved = errors.New("conversation: the conversation's shard moved to another coordinator")

func decodeOutboxOps(v []byte) ([]store.Op, error) {
	if len(v) == 0 || v[0] != outboxFormat {
		return nil, errCorruptOutbox
	}
	v = v[1:]
	var ops []store.Op
	for len(v) > 0 {
		kind := store.OpKind(v[0])
		v = v[1:]
		var k, val []byte
		var ok1, ok2 bool
		k, v, ok1 = uvarintField(v)
		val, v, ok2 = uvarintField(v)
		if !ok1 || !ok2 || kind < store.OpSet || kind > store.OpMergeFields {
			return nil, errCorruptOutbox
		}
		ops = append(ops, store.Op{Kind: kind, Key: k, Value: val})
	}
	return ops, nil
}

// flushOutbox applies the entries of the conversations in refs (the
// commands' own, just committed) and waits up to Config.OutboxWait for
// them. The caller holds no lock.
func (e *Engine) flushOutbox(refs []convRef) {
	var waits []<-chan struct{}
	for _, ref := range refs {
		if ch := e.kickOutbox(ref); ch != nil {
			waits = append(waits, ch)
		}
	}
	if len(waits) == 0 {
		return
	}
	t := time.NewTimer(e.cfg.OutboxWait)
	defer t.Stop()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// kickOutbox makes sure a runner applies ref's entries from now on and
// returns a channel closed when it has tried, or nil when maxOutboxRunners
// are busy (the drainer applies them later). Before Start and after Stop
// the runner runs on the caller's goroutine.
func (e *Engine) kickOutbox(ref convRef) <-chan struct{} {
	o := &e.outbox
	o.mu.Lock()
	if run, ok := o.running[ref]; ok {
		run.again = true
		ch := run.next
		o.mu.Unlock()
		return ch
	}
	if len(o.running) >= maxOutboxRunners {
		o.mu.Unlock()
		e.metrics.outbox.WithLabelValues("deferred").Inc()
		return nil
	}
	run := &outboxRun{next: make(chan struct{})}
	o.running[ref] = run
	ch := run.next
	o.mu.Unlock()
	e.goFunc(func() { e.runOutbox(ref, run) })
	return ch
}

// runOutbox applies ref's entries in rounds until no round was asked for
// while the last one ran.
func (e *Engine) runOutbox(ref convRef, run *outboxRun) {
	o := &e.outbox
	for {
		o.mu.Lock()
		done := run.next
		run.next, run.again = make(chan struct{}), false
		o.mu.Unlock()
		// The waiters go on once the effects are applied; the entries'
		// deletion is the runner's own business.
		var once sync.Once
		applied := func() { once.Do(func() { close(done) }) }
		e.logOutboxResult(ref, e.applyOutbox(ref, applied))
		applied()
		o.mu.Lock()
		if !run.again {
			delete(o.running, ref)
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

// outboxDiskLowLogEvery is how often at most a round refused for a full
// disk is logged.
const outboxDiskLowLogEvery = time.Minute

// logOutboxResult logs a failed round of ref's runner. A round refused
// because the disk is low (here or at too many of the target shard's
// replicas) fails again on every retry until an operator frees space, so
// such refusals are logged at most once per outboxDiskLowLogEvery, with the
// number not logged since; imnode_conversation_outbox_total{result="failed"}
// counts every failed round.
func (e *Engine) logOutboxResult(ref convRef, err error) {
	o := &e.outbox
	switch {
	case err == nil, errors.Is(err, errOutboxMoved):
	case errors.Is(err, wire.ErrDiskLow) || errors.Is(err, store.ErrDiskLow):
		if !o.diskLowLog.Allow(e.now(), outboxDiskLowLogEvery) {
			o.diskLowQuiet.Add(1)
			return
		}
		e.log.Warn("Applying conversations' effects in other shards is refused: storage full; retrying until space is freed",
			"app", ref.app, "cid", ref.cid, "err", err, "notLogged", o.diskLowQuiet.Swap(0), "loggedEvery", outboxDiskLowLogEvery)
	default:
		e.log.Warn("Applying a conversation's effects in other shards failed; retrying later",
			"app", ref.app, "cid", ref.cid, "err", err)
	}
}

// applyOutbox applies ref's entries in order, each in one batch at its
// shard's coordinator; it stops at the first failure. It calls applied
// when every entry it found is applied. The entries it applies are
// deleted later (outbox.applied); those applied in an earlier round and
// still there are deleted now.
func (e *Engine) applyOutbox(ref convRef, applied func()) error {
	shard := e.shards.ConvShard(ref.app, ref.cid)
	prefix := store.OutboxKey(shard, ref.app, ref.cid).Bytes()
	earlier := map[string]bool{}
	for _, k := range e.outbox.takeApplied(ref) {
		earlier[string(k)] = true
	}
	del := e.st.NewBatch()
	var done [][]byte
	var failed error
	for lower, more := prefix, true; more && failed == nil; {
		type entry struct{ k, v []byte }
		var page []entry
		err := e.st.Scan(lower, store.PrefixEnd(prefix), false, func(k, v []byte) (bool, error) {
			page = append(page, entry{append([]byte(nil), k...), append([]byte(nil), v...)})
			return len(page) < outboxPage, nil
		})
		if err != nil {
			failed = err
			break
		}
		more = len(page) == outboxPage
		if more {
			lower = append(page[len(page)-1].k, 0)
		}
		for _, en := range page {
			if earlier[string(en.k)] {
				del.Delete(en.k)
				continue
			}
			if !e.shards.Coordinates(shard) {
				failed = errOutboxMoved
				break
			}
			if err := e.applyEntry(en.k, en.v); err != nil {
				failed = err
				break
			}
			done = append(done, en.k)
		}
	}
	if failed == nil {
		applied()
	}
	e.metrics.outbox.WithLabelValues("applied").Add(float64(len(done)))
	if !e.outbox.deferDelete(ref, done) {
		for _, k := range done {
			del.Delete(k)
		}
	}
	if !del.Empty() {
		if err := e.st.Commit(del); err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		e.metrics.outbox.WithLabelValues("failed").Inc()
	}
	return failed
}

// applyEntry applies the entry at key, value v, in one batch at its
// shard's coordinator. A corrupt entry is logged and counts as applied:
// it could never be, and must not block the conversation's later effects.
func (e *Engine) applyEntry(key, v []byte) error {
	ops, err := decodeOutboxOps(v)
	if first := outboxVersion(key); err == nil && first != 0 {
		for i := range ops {
			ops[i].Version = first + uint64(i)
		}
	}
	if err == nil && !e.outbox.firstTry(key) {
		ops, err = e.dropReplayedStates(ops)
	}
	b := e.st.NewBatch()
	if err == nil {
		err = appendOps(b, ops)
	}
	if err == nil {
		written := statesIn(ops)
		err = e.st.Commit(b)
		e.forgetStates(written) // see states.go
		return err
	}
	if errors.Is(err, errCorruptOutbox) {
		e.log.Error("Dropping a corrupt outbox entry", "key", fmt.Sprintf("%x", key))
		return nil
	}
	return err
}

// deleteApplied deletes the entries applied and not deleted yet (Stop:
// else the next start would apply them again).
func (e *Engine) deleteApplied() {
	o := &e.outbox
	o.mu.Lock()
	b := e.st.NewBatch()
	for ref, keys := range o.applied {
		for _, k := range keys {
			b.Delete(k)
		}
		delete(o.applied, ref)
	}
	o.nApplied = 0
	o.mu.Unlock()
	if b.Empty() {
		return
	}
	if err := e.st.Commit(b); err != nil {
		e.log.Warn("Deleting applied outbox entries failed; they are applied again after the restart", "err", err)
	}
}

// dropReplayedStates removes from ops, an entry that may have been applied
// before, the read states that applying it again could set back:
//   - the read state a join writes for each member whose index entry it adds
//     and which exists already: the join was applied, and the member may
//     have read since;
//   - any read state (a join's, SetUnread's) whose change time is not after
//     the stored state's: the entry was applied, or the member's state
//     changed after the command (a read, an ack), which must stand.
//
// Every change of a member's read state in a conversation is made at the
// conversation's coordinator and stamps its time (clientState.Changed).
func (e *Engine) dropReplayedStates(ops []store.Op) ([]store.Op, error) {
	skip := map[string]bool{}
	for _, op := range ops {
		r, shard, app, fam := store.ReadKey(op.Key)
		if op.Kind != store.OpSet || fam != store.FamClientConv {
			continue
		}
		client, cid := r.Str(), r.Str()
		if r.Err() != nil {
			continue
		}
		_, err := e.st.Get(op.Key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		skip[string(store.NewKey(shard, app, store.FamClientState).Str(client).Str(cid).Bytes())] = true
	}
	for _, op := range ops {
		if op.Kind != store.OpMergeFields || skip[string(op.Key)] {
			continue
		}
		if _, _, _, fam := store.ReadKey(op.Key); fam != store.FamClientState {
			continue
		}
		stale, err := e.staleState(op)
		if err != nil {
			return nil, err
		}
		if stale {
			skip[string(op.Key)] = true
		}
	}
	if len(skip) == 0 {
		return ops, nil
	}
	out := make([]store.Op, 0, len(ops))
	for _, op := range ops {
		if op.Kind != store.OpMergeFields || !skip[string(op.Key)] {
			out = append(out, op)
		}
	}
	return out, nil
}

// staleState reports whether op, a replayed read-state update, changes the
// state no later than the stored state was changed.
func (e *Engine) staleState(op store.Op) (bool, error) {
	fields, err := mergeOpFields(op.Value)
	if err != nil {
		return false, err
	}
	var changed int64
	found := false
	for _, f := range fields {
		if f.Name == fieldChanged && !f.Deleted {
			if err := decodeInt(f.Value, &changed); err != nil {
				return false, errCorruptOutbox
			}
			found = true
		}
	}
	if !found {
		return false, nil
	}
	v, err := e.st.Get(op.Key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	stored, err := decodeClientState(v)
	if err != nil {
		return false, nil // a state it cannot read is replaced, as on a first apply
	}
	return stored.Changed >= changed, nil
}

// outboxLoop is the drainer: every Config.OutboxInterval it starts runners
// for the conversations with entries in the shards this node coordinates.
func (e *Engine) outboxLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.OutboxInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, shard := range e.shards.Coordinated() {
			if !e.drainOutboxShard(ctx, shard) {
				break
			}
		}
	}
}

// drainOutboxShard starts runners for the conversations with entries in
// shard, one scan step per conversation. It reports false when the runners
// are all busy or ctx is done: a scan of a shard the node stopped
// coordinating meanwhile retries for a while before it fails, so a
// stopping engine must not go on to the next one (a walk over every shard
// held a node's shutdown for minutes).
func (e *Engine) drainOutboxShard(ctx context.Context, shard uint16) bool {
	lower := store.OutboxPrefix(shard).Bytes()
	upper := store.PrefixEnd(lower)
	for {
		if ctx.Err() != nil {
			return false
		}
		var ref convRef
		found := false
		err := e.st.Scan(lower, upper, false, func(k, _ []byte) (bool, error) {
			var err error
			ref, err = outboxRef(k)
			found = err == nil
			return false, err
		})
		if err != nil {
			e.log.Warn("Reading the outbox failed", "shard", shard, "err", err)
			return true
		}
		if !found {
			return true
		}
		if e.kickOutbox(ref) == nil {
			return false
		}
		lower = store.PrefixEnd(store.OutboxKey(shard, ref.app, ref.cid).Bytes())
	}
}
