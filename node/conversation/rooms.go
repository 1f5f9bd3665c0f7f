package conversation

import (
	"slices"
	"sync"

	"github.com/imcluster/imcluster/node/store"
)

// rooms caches the joined member sets of chat rooms (transient
// conversations have no member list in their record). The sets are stored
// too (FamRoom, in the room's shard), so a node that takes over a room's
// shard loads them: loaded marks the rooms whose cached set is complete.
// sorted holds each room's set as a sorted slice, built by the first list
// after a change and shared by every send until the next one (a room's
// messages outnumber its joins and leaves). Guarded by mu, a leaf lock.
type rooms struct {
	mu       sync.Mutex
	members  map[string]map[string]struct{} // app \x00 cid -> client ids
	byClient map[string]map[string]struct{} // app \x00 client id -> cids
	loaded   map[string]bool                // app \x00 cid -> members complete
	sorted   map[string][]string            // app \x00 cid -> members, sorted; read-only
}

func (r *rooms) init() {
	r.members = map[string]map[string]struct{}{}
	r.byClient = map[string]map[string]struct{}{}
	r.loaded = map[string]bool{}
	r.sorted = map[string][]string{}
}

// forget drops the loaded marks: the stored sets are authoritative again
// (coordination of some shards moved).
func (r *rooms) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = map[string]bool{}
}

// isLoaded reports whether the cached set of a room is complete.
func (r *rooms) isLoaded(app, cid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loaded[roomKey(app, cid)]
}

// replace installs a room's stored member set.
func (r *rooms) replace(app, cid string, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := roomKey(app, cid)
	for id := range r.members[k] {
		del(r.byClient, roomKey(app, id), cid)
	}
	delete(r.members, k)
	delete(r.sorted, k)
	for _, id := range ids {
		add(r.members, k, id)
		add(r.byClient, roomKey(app, id), cid)
	}
	r.loaded[k] = true
}

// joinedBy returns the rooms the client joined (as cached here).
func (r *rooms) joinedBy(app, clientID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for cid := range r.byClient[roomKey(app, clientID)] {
		out = append(out, cid)
	}
	return out
}

func roomKey(app, id string) string { return app + "\x00" + id }

func (r *rooms) join(app, cid, clientID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	add(r.members, roomKey(app, cid), clientID)
	add(r.byClient, roomKey(app, clientID), cid)
	delete(r.sorted, roomKey(app, cid))
}

func (r *rooms) leave(app, cid, clientID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	del(r.members, roomKey(app, cid), clientID)
	del(r.byClient, roomKey(app, clientID), cid)
	delete(r.sorted, roomKey(app, cid))
}

// list returns the room's members, sorted. The slice is shared: read-only,
// like a conversation record's Members.
func (r *rooms) list(app, cid string) []string {
	k := roomKey(app, cid)
	r.mu.Lock()
	defer r.mu.Unlock()
	if out, ok := r.sorted[k]; ok {
		return out
	}
	set := r.members[k]
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	r.sorted[k] = out
	return out
}

// has reports whether clientID is in the room's cached set.
func (r *rooms) has(app, cid, clientID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.members[roomKey(app, cid)][clientID]
	return ok
}

// drop forgets a room (conversation deleted).
func (r *rooms) drop(app, cid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.members[roomKey(app, cid)] {
		del(r.byClient, roomKey(app, id), cid)
	}
	delete(r.members, roomKey(app, cid))
	delete(r.loaded, roomKey(app, cid))
	delete(r.sorted, roomKey(app, cid))
}

func add(m map[string]map[string]struct{}, k, v string) {
	set := m[k]
	if set == nil {
		set = map[string]struct{}{}
		m[k] = set
	}
	set[v] = struct{}{}
}

func del(m map[string]map[string]struct{}, k, v string) {
	if set := m[k]; set != nil {
		delete(set, v)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

func (e *Engine) roomKey(app, cid, clientID string) []byte {
	return e.convKey(app, cid, store.FamRoom).Str(clientID).Bytes()
}

// roomJoin records that clientID joined room cid.
func (e *Engine) roomJoin(app, cid, clientID string) error {
	if err := e.roomLoad(app, cid); err != nil {
		return err
	}
	b := e.st.NewBatch()
	b.Set(e.roomKey(app, cid, clientID), nil)
	if err := e.st.Commit(b); err != nil {
		return internal("commit room join", err)
	}
	e.rooms.join(app, cid, clientID)
	return nil
}

// roomLeave records that clientID left room cid.
func (e *Engine) roomLeave(app, cid, clientID string) error {
	b := e.st.NewBatch()
	b.Delete(e.roomKey(app, cid, clientID))
	if err := e.st.Commit(b); err != nil {
		return internal("commit room leave", err)
	}
	e.rooms.leave(app, cid, clientID)
	return nil
}

// roomList returns the joined members of room cid, sorted (read-only),
// loading the stored set when the cache is not complete.
func (e *Engine) roomList(app, cid string) ([]string, error) {
	if err := e.roomLoad(app, cid); err != nil {
		return nil, err
	}
	return e.rooms.list(app, cid), nil
}

// roomLoad loads the stored member set of room cid unless the cache holds
// it complete.
func (e *Engine) roomLoad(app, cid string) error {
	if !e.rooms.isLoaded(app, cid) {
		prefix := e.convKey(app, cid, store.FamRoom).Bytes()
		var ids []string
		err := e.st.ScanPrefix(prefix, false, func(k, _ []byte) (bool, error) {
			r, _, _, _ := store.ReadKey(k)
			_ = r.Str() // cid
			id := r.Str()
			if r.Err() == nil {
				ids = append(ids, id)
			}
			return true, nil
		})
		if err != nil {
			return internal("load room members", err)
		}
		e.rooms.replace(app, cid, ids)
	}
	return nil
}

// roomHas reports whether clientID joined room cid.
func (e *Engine) roomHas(app, cid, clientID string) (bool, error) {
	if err := e.roomLoad(app, cid); err != nil {
		return false, err
	}
	return e.rooms.has(app, cid, clientID), nil
}

// leaveRooms removes a client that went offline from the rooms it joined
// through this node.
func (e *Engine) leaveRooms(app, clientID string) {
	for _, cid := range e.rooms.joinedBy(app, clientID) {
		if err := e.roomLeave(app, cid, clientID); err != nil {
			e.log.Warn("Leaving a chat room failed", "cid", cid, "client", clientID, "err", err)
		}
	}
}
