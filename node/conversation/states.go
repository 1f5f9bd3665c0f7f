package conversation

import (
	"sync"

	"github.com/imcluster/imcluster/node/store"
)

// Every receiver ack and read reads the client's state in the conversation
// (its read and delivery pointers) and writes it back. Each write makes the
// store's read cache drop the key, so the next read of it would go to
// Pebble (a point read that merges the field doc's operands). The engine
// keeps the states its acks and reads loaded and wrote instead, each in its
// client stripe, where those read-modify-writes hold the stripe's lock.
//
// An entry is the state in the store: every write of a client state is
// made at the conversation's coordinator, by an ack or a read (which keep
// the state they committed, or drop the entry when the commit failed) or
// by commitConv and the outbox (which drop the entries of the states their
// batch wrote after committing it, whatever the outcome: forgetStates).
// A fill holds the client's stripe from its store read to its fill, and a
// drop takes it after its commit, so no fill outlives a write it did not
// see. Like recentMsgs, an entry is used only under the Engine.tsEpoch it
// was filled under and while this node coordinates the conversation's
// shard: another node may have written the state while it coordinated.

// clientStripe serializes the read-modify-write of the per-client read
// state of the clients hashing to it (see node/LOCKING.md) and keeps their
// states.
type clientStripe struct {
	sync.Mutex
	// states holds the known states, at most
	// maxStatesPerStripe (a new one past that evicts another, in map
	// order); guarded by the mutex.
	states map[stateRef]knownState
}

// maxStatesPerStripe bounds the states a client stripe keeps: 1024
// stripes of 64, about 200 bytes each with their map slot and ids, some
// 13 MiB at most.
const maxStatesPerStripe = 64

// knownState is a state as the store holds it, and the Engine.tsEpoch it
// was read or written under.
type knownState struct {
	s     clientState
	epoch uint64
}

// loadStateLocked returns the client's state in conversation cid, from its
// stripe when known there, else from the store, and the epoch to keep it
// under (keepStateLocked). The caller holds the client's stripe.
func (e *Engine) loadStateLocked(app, clientID, cid string) (clientState, uint64, error) {
	epoch := e.tsEpoch.Load()
	cs := &e.clientStripes[stripeIndex(app, clientID)]
	if k, ok := cs.states[stateRef{app, clientID, cid}]; ok && k.epoch == epoch &&
		e.shards.Coordinates(e.shards.ConvShard(app, cid)) {
		return k.s, epoch, nil
	}
	s, err := e.loadClientState(app, clientID, cid)
	return s, epoch, err
}

// keepStateLocked records s, loaded or committed under epoch, as the
// client's state in cid. The caller holds the client's stripe.
func (e *Engine) keepStateLocked(app, clientID, cid string, s clientState, epoch uint64) {
	cs := &e.clientStripes[stripeIndex(app, clientID)]
	key := stateRef{app, clientID, cid}
	if _, ok := cs.states[key]; !ok && len(cs.states) >= maxStatesPerStripe {
		for k := range cs.states {
			delete(cs.states, k)
			break
		}
	}
	if cs.states == nil {
		cs.states = map[stateRef]knownState{}
	}
	s.stored, s.base, s.hasBase = nil, s.values(), true
	cs.states[key] = knownState{s: s, epoch: epoch}
}

// dropStateLocked forgets the client's state in cid. The caller holds the
// client's stripe.
func (e *Engine) dropStateLocked(app, clientID, cid string) {
	delete(e.clientStripes[stripeIndex(app, clientID)].states, stateRef{app, clientID, cid})
}

// stateRef names a client's state in a conversation: app, client, cid.
type stateRef [3]string

// statesIn returns the client states ops write.
func statesIn(ops []store.Op) []stateRef {
	var out []stateRef
	for _, op := range ops {
		r, _, app, fam := store.ReadKey(op.Key)
		if fam != store.FamClientState {
			continue
		}
		clientID, cid := r.Str(), r.Str()
		if r.Err() == nil {
			out = append(out, stateRef{app, clientID, cid})
		}
	}
	return out
}

// forgetStates drops the known states of refs (statesIn of a batch), after
// their batch was committed or failed to be. It takes each client's
// stripe, so call it holding no client stripe.
func (e *Engine) forgetStates(refs []stateRef) {
	for _, k := range refs {
		lock := e.clientLock(k[0], k[1])
		lock.Lock()
		e.dropStateLocked(k[0], k[1], k[2])
		lock.Unlock()
	}
}
