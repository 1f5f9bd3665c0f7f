package membership

import (
	"github.com/hashicorp/memberlist"
)

// events is Membership's memberlist.EventDelegate. memberlist calls it with
// its node lock held: it decodes the meta, merges under m.mu and signals
// the loop, nothing more.
type events Membership

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin records a node that became alive.
func (ev *events) NotifyJoin(n *memberlist.Node) { (*Membership)(ev).observe(n) }

// NotifyUpdate records a node whose meta changed.
func (ev *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(ev).observe(n) }

// NotifyLeave notes a node that died or left gossip; liveness is read from
// memberlist when the snapshot is built, and the roster is unchanged.
func (ev *events) NotifyLeave(n *memberlist.Node) {
	m := (*Membership)(ev)
	m.mu.Lock()
	delete(m.live, n.Name)
	m.mu.Unlock()
	m.signal()
}

// observe merges the entry and meta a node announces.
func (m *Membership) observe(n *memberlist.Node) {
	mt, err := decodeMeta(n.Meta)
	if err != nil || mt.ID != n.Name {
		m.log.Warn("Ignoring node with malformed meta", keyNode, n.Name, keyErr, err)
		m.signal()
		return
	}
	m.mu.Lock()
	m.live[n.Name] = n.Address()
	if mt.ID != m.cfg.NodeID {
		m.metas[mt.ID] = mt
	}
	m.mergeLocked(mt.ID, entry{State: mt.State, Seq: mt.Seq})
	m.mu.Unlock()
	m.signal()
}
