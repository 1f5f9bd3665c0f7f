package gateway

import (
	"sync"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/limit"
)

// clientSession is one logged-in client on one socket. Its fields are immutable
// after login.
type clientSession struct {
	id           conversation.SessionID
	app          *apps.App
	clientID     string
	conn         *conn
	tag          string
	deviceID     string
	token        string
	configBitmap int64
	// queries is the session's conv/query bucket (limits.go, allowQuery);
	// only the connection's worker touches it, one command at a time.
	queries limit.Bucket
	// limits are the app's limiters, whose client rates (allowClient) the
	// session's client shares with its other sessions on this node.
	limits *appLimiters
}

type clientKey struct{ app, client string }

// registry indexes the node's live sessions by (app, clientId). It is the
// single-node session registry; in a cluster the client shard holds the
// authoritative copy and this one is the local part of it.
type registry struct {
	mu      sync.RWMutex
	clients map[clientKey][]*clientSession
	count   int
}

func newRegistry() *registry { return &registry{clients: make(map[clientKey][]*clientSession)} }

func (r *registry) add(s *clientSession) {
	r.mu.Lock()
	k := clientKey{s.app.ID, s.clientID}
	r.clients[k] = append(r.clients[k], s)
	r.count++
	r.mu.Unlock()
}

// remove deletes s and reports whether it was registered.
func (r *registry) remove(s *clientSession) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := clientKey{s.app.ID, s.clientID}
	list := r.clients[k]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			if len(list) == 0 {
				delete(r.clients, k)
			} else {
				r.clients[k] = list
			}
			r.count--
			return true
		}
	}
	return false
}

// sessions returns a copy of the sessions of a client.
func (r *registry) sessions(app, client string) []*clientSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	list := r.clients[clientKey{app, client}]
	if len(list) == 0 {
		return nil
	}
	return append([]*clientSession(nil), list...)
}

// sessionsOf returns a copy of the sessions of every client in ids, each
// client's together, under one lock for the whole push.
func (r *registry) sessionsOf(app string, ids []string) []*clientSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, id := range ids {
		n += len(r.clients[clientKey{app, id}])
	}
	if n == 0 {
		return nil
	}
	out := make([]*clientSession, 0, n)
	for _, id := range ids {
		out = append(out, r.clients[clientKey{app, id}]...)
	}
	return out
}

// online returns the ids, in input order, that have at least one session.
func (r *registry) online(app string, ids []string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, id := range ids {
		if len(r.clients[clientKey{app, id}]) > 0 {
			out = append(out, id)
		}
	}
	return out
}

func (r *registry) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}
