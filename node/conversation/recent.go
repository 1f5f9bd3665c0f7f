package conversation

import (
	"hash/maphash"
	"sync"
)

// recentMsgs is what the engine knows in memory of the messages it wrote
// lately, per conversation: enough for a receiver ack to find what it
// covers without scanning the messages in the store (resolveAck), in the
// common case of a conversation none of whose recent messages asked for a
// receipt or names its recipients (a system conversation's To).
//
// An entry is started by a send's timestamp assignment (nextTsLocked,
// under the conversation's stripe lock): its since is the conversation's
// last timestamp assigned before, so every message at or before since is
// unknown ground and every message after it was assigned a timestamp by
// this node since then. Each message write (putMessage) notes the message
// before its batch is committed, so a message an ack can see (committed)
// was noted; a noted message whose commit failed only makes acks scan
// when they need not. The messages a node writes with timestamps it did
// not assign (imports) never ask for a receipt nor name recipients; one
// written after since is noted, one at or before it is unknown ground.
//
// An entry is trusted only under the Engine.tsEpoch it was started under,
// which rises whenever this node takes a shard's lease over (another node
// may have written messages meanwhile) or the placement changes
// (ForgetTimestamps), and only on a node coordinating the shard now; the
// next send under a new epoch starts the entry again, with a since at or
// after every message another coordinator wrote (nextTsLocked reads the
// newest stored message again first).
//
// It is split into recentParts parts, each guarded by its own mutex (a
// leaf lock, held only for a map update or look-up) and holding at most
// recentPartMax conversations: starting another past that evicts one (map
// order, random). Losing an entry costs only scans: until the
// conversation's next send starts it again, its acks scan.
type recentMsgs struct {
	seed  maphash.Seed
	parts [recentParts]recentPart
}

// recentParts is the number of independently locked parts: the ack loop
// reads and every send writes, so one lock would be shared by all of them.
const recentParts = 64

// recentPartMax bounds the conversations one part remembers (64 × 1024 in
// all, about 100 bytes each: under 7 MiB).
const recentPartMax = 1024

type recentPart struct {
	mu sync.Mutex
	m  map[string]recentConv
}

// recentConv is what a recentMsgs entry knows of one conversation.
type recentConv struct {
	// since: the entry knows nothing of messages at or before it.
	since int64
	// last is the newest timestamp noted (committed or not; since if none).
	last int64
	// flagged is the newest timestamp noted of a message that asked for
	// a receipt or names its recipients (0: none since since).
	flagged int64
	// epoch is the Engine.tsEpoch the entry was made under.
	epoch uint64
}

func (rm *recentMsgs) init() {
	rm.seed = maphash.MakeSeed()
	for i := range rm.parts {
		rm.parts[i].m = map[string]recentConv{}
	}
}

func (rm *recentMsgs) part(key string) *recentPart {
	return &rm.parts[maphash.String(rm.seed, key)%recentParts]
}

// start makes sure conversation key (roomKey) has an entry trusted under
// epoch, starting one after last (the last timestamp assigned to it) if
// not. Called with the conversation's stripe lock held, before a new
// timestamp is assigned.
func (rm *recentMsgs) start(key string, epoch uint64, last int64) {
	p := rm.part(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.m[key]
	if ok && c.epoch == epoch {
		return
	}
	if !ok && len(p.m) >= recentPartMax {
		for k := range p.m {
			delete(p.m, k)
			break
		}
	}
	p.m[key] = recentConv{since: last, last: last, epoch: epoch}
}

// note records that m is about to be written to conversation key under
// epoch (in an entry started under it; else there is nothing to keep).
func (rm *recentMsgs) note(key string, epoch uint64, m *message) {
	p := rm.part(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.m[key]
	if !ok || c.epoch != epoch || m.Ts <= c.since {
		return
	}
	c.last = max(c.last, m.Ts)
	if m.Receipt || len(m.To) > 0 {
		c.flagged = max(c.flagged, m.Ts)
	}
	p.m[key] = c
}

// plainRange reports whether, under epoch, every message of conversation
// key with a timestamp in [from, to] was noted, none of them asked for a
// receipt or names its recipients, and to is not after the newest one
// noted.
func (rm *recentMsgs) plainRange(key string, epoch uint64, from, to int64) bool {
	p := rm.part(key)
	p.mu.Lock()
	c, ok := p.m[key]
	p.mu.Unlock()
	return ok && c.epoch == epoch && from > c.since && from <= to && to <= c.last && c.flagged < from
}
