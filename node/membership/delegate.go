package membership

import (
	"github.com/hashicorp/memberlist"
)

// delegate is Membership's memberlist.Delegate. memberlist calls it from
// its own goroutines: every method copies what it needs under m.mu, never
// blocks and never calls back into memberlist.
type delegate Membership

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns this node's encoded meta record.
func (d *delegate) NodeMeta(limit int) []byte {
	m := (*Membership)(d)
	m.mu.Lock()
	mt := m.metas[m.cfg.NodeID]
	m.mu.Unlock()
	b := encodeMeta(nil, &mt)
	if len(b) > limit {
		// Config.Validate checks the worst case, so this is a bug.
		panic("membership: node meta exceeds memberlist limit")
	}
	return b
}

// NotifyMsg receives user messages: roster entry broadcasts (Remove).
func (d *delegate) NotifyMsg(b []byte) {
	m := (*Membership)(d)
	id, e, err := decodeEntryMsg(b)
	if err != nil {
		m.log.Debug("Ignoring malformed roster message", keyErr, err)
		return
	}
	m.mu.Lock()
	changed := m.mergeLocked(id, e)
	m.mu.Unlock()
	if changed {
		m.signal()
	}
}

// GetBroadcasts returns queued roster broadcasts.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	m := (*Membership)(d)
	if m.queue == nil {
		return nil
	}
	return m.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns the whole roster table for a push/pull exchange.
func (d *delegate) LocalState(bool) []byte {
	m := (*Membership)(d)
	m.mu.Lock()
	defer m.mu.Unlock()
	return encodeTable(nil, m.table)
}

// MergeRemoteState merges a peer's roster table.
func (d *delegate) MergeRemoteState(b []byte, _ bool) {
	m := (*Membership)(d)
	t, err := decodeTable(b)
	if err != nil {
		m.log.Debug("Ignoring malformed roster table", keyErr, err)
		return
	}
	changed := false
	m.mu.Lock()
	for id, e := range t {
		changed = m.mergeLocked(id, e) || changed
	}
	m.mu.Unlock()
	if changed {
		m.signal()
	}
}
