package conversation

import (
	"slices"
	"sync"
)

// rooms is the in-memory online member set of chat rooms (transient
// conversations have no stored members). Guarded by mu, a leaf lock.
type rooms struct {
	mu       sync.Mutex
	members  map[string]map[string]struct{} // app \x00 cid -> client ids
	byClient map[string]map[string]struct{} // app \x00 client id -> cids
}

func (r *rooms) init() {
	r.members = map[string]map[string]struct{}{}
	r.byClient = map[string]map[string]struct{}{}
}

func roomKey(app, id string) string { return app + "\x00" + id }

func (r *rooms) join(app, cid, clientID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	add(r.members, roomKey(app, cid), clientID)
	add(r.byClient, roomKey(app, clientID), cid)
}

func (r *rooms) leave(app, cid, clientID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	del(r.members, roomKey(app, cid), clientID)
	del(r.byClient, roomKey(app, clientID), cid)
}

// leaveAll removes the client from every room it joined.
func (r *rooms) leaveAll(app, clientID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for cid := range r.byClient[roomKey(app, clientID)] {
		del(r.members, roomKey(app, cid), clientID)
	}
	delete(r.byClient, roomKey(app, clientID))
}

func (r *rooms) has(app, cid, clientID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.members[roomKey(app, cid)][clientID]
	return ok
}

// list returns the room's members, sorted. The slice is owned by the caller.
func (r *rooms) list(app, cid string) []string {
	r.mu.Lock()
	set := r.members[roomKey(app, cid)]
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	r.mu.Unlock()
	slices.Sort(out)
	return out
}

// drop forgets a room (conversation deleted).
func (r *rooms) drop(app, cid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.members[roomKey(app, cid)] {
		del(r.byClient, roomKey(app, id), cid)
	}
	delete(r.members, roomKey(app, cid))
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
