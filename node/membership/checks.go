package membership

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// MaxClusterIDLen bounds a cluster id (it rides in every node's meta).
const MaxClusterIDLen = 64

// Refusals of a peer or a join. A node that has not joined yet and meets
// ErrDuplicateID or ErrMismatch stops trying: Refused reports the error
// and the owner exits.
var (
	// ErrDuplicateID: another live node already uses this node id.
	ErrDuplicateID = errors.New("membership: duplicate node id")
	// ErrMismatch: the peer belongs to another cluster or has other
	// cluster settings.
	ErrMismatch = errors.New("membership: cluster settings differ")
	// ErrNoCluster: this new node reached only other new nodes (nobody
	// bootstrapped a cluster yet). Retried.
	ErrNoCluster = errors.New("membership: no cluster to join yet: every node that answered is new (start the first node of a new cluster with --bootstrap)")
)

// Identity is what a node learns by joining: the cluster id, and whether it
// has seen another member.
type Identity struct {
	ClusterID string
	Clustered bool
}

// checkPeerLocked reports why node n must not be a member next to this
// one: a live node with the same id at another address, or other cluster
// settings. A peer with an empty cluster id (a new node) or a format-1 meta
// (an older imnode) is checked on what it gossips. m.mu must be held.
func (m *Membership) checkPeerLocked(n *memberlist.Node) error {
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	if n.Name == m.cfg.NodeID {
		if addr != m.addr && m.addr != "" {
			return fmt.Errorf("%w: node id %q is already a live member at %s (this node is at %s)", ErrDuplicateID, n.Name, addr, m.addr)
		}
		return nil
	}
	if at, ok := m.live[n.Name]; ok && at != addr {
		return fmt.Errorf("%w: node id %q is already a live member at %s (the newcomer is at %s)", ErrDuplicateID, n.Name, at, addr)
	}
	mt, err := decodeMeta(n.Meta)
	if err != nil {
		return err
	}
	return m.compatibleLocked(mt)
}

// compatibleLocked names the first cluster setting in which mt differs
// from this node's. m.mu must be held.
func (m *Membership) compatibleLocked(mt Meta) error {
	self := m.metas[m.cfg.NodeID]
	if mt.ClusterID != "" && self.ClusterID != "" && mt.ClusterID != self.ClusterID {
		return fmt.Errorf("%w: node %s belongs to cluster %q, this node to %q", ErrMismatch, mt.ID, mt.ClusterID, self.ClusterID)
	}
	for _, s := range []struct {
		name         string
		theirs, ours int
	}{
		{"shard count (--shards)", mt.Shards, self.Shards},
		{"replication factor (--replication-factor)", mt.ReplicationFactor, self.ReplicationFactor},
		{"write quorum (--write-quorum)", mt.WriteQuorum, self.WriteQuorum},
	} {
		if s.theirs != 0 && s.ours != 0 && s.theirs != s.ours {
			return fmt.Errorf("%w: node %s has %s %d, this node %d", ErrMismatch, mt.ID, s.name, s.theirs, s.ours)
		}
	}
	return nil
}

// alive is Membership's memberlist.AliveDelegate: every alive message
// (gossip and push/pull) passes it, so an incompatible node is never
// added, whichever way its news arrives.
type alive Membership

var _ memberlist.AliveDelegate = (*alive)(nil)

// NotifyAlive refuses a node that checkPeerLocked refuses.
func (a *alive) NotifyAlive(n *memberlist.Node) error {
	m := (*Membership)(a)
	m.mu.Lock()
	err := m.checkPeerLocked(n)
	m.mu.Unlock()
	if err != nil {
		m.warnRefused(n.Name, err)
	}
	return err
}

// merge is Membership's memberlist.MergeDelegate, asked before a join's
// push/pull merges the other side's nodes, on both sides.
type merge Membership

var _ memberlist.MergeDelegate = (*merge)(nil)

// NotifyMerge refuses a merge with any incompatible live node, and one in
// which nobody knows a cluster id. A new node adopts the cluster id the
// other side knows. A node that has not joined yet and is refused for a
// duplicate id or other settings gives up (Refused).
func (mg *merge) NotifyMerge(peers []*memberlist.Node) error {
	m := (*Membership)(mg)
	err := m.checkMerge(peers)
	if err == nil {
		return nil
	}
	if !m.joined.Load() && m.fatal(err) {
		m.refuse(err)
	} else {
		m.warnRefused("", err)
	}
	return err
}

// fatal reports whether a refused join cannot succeed by retrying: other
// settings at once; a duplicate id once it persisted for DuplicateGrace
// (until the cluster declares a crashed predecessor at another address
// dead, the restarted node looks like a duplicate).
func (m *Membership) fatal(err error) bool {
	switch {
	case errors.Is(err, ErrMismatch):
		return true
	case !errors.Is(err, ErrDuplicateID):
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.duplicateSince.IsZero() {
		m.duplicateSince = now
	}
	return now.Sub(m.duplicateSince) >= m.cfg.DuplicateGrace
}

func (m *Membership) checkMerge(peers []*memberlist.Node) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	formed := false
	learned := ""
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		if err := m.checkPeerLocked(n); err != nil {
			return err
		}
		mt, err := decodeMeta(n.Meta)
		if err != nil || mt.New || n.Name == m.cfg.NodeID {
			continue
		}
		if learned != "" && mt.ClusterID != "" && learned != mt.ClusterID {
			return fmt.Errorf("%w: the other side knows two cluster ids, %q and %q", ErrMismatch, learned, mt.ClusterID)
		}
		formed = true
		if mt.ClusterID != "" {
			learned = mt.ClusterID
		}
	}
	if !m.cfg.New {
		return nil
	}
	if !formed {
		return ErrNoCluster
	}
	m.cfg.New = false
	if m.cfg.ClusterID == "" {
		m.cfg.ClusterID = learned
	}
	m.metas[m.cfg.NodeID] = m.cfg.meta(m.self.State, m.self.Seq)
	m.metaDirty.Store(true)
	m.log.Info("Joining cluster", "clusterId", m.cfg.ClusterID)
	m.signal()
	return nil
}

// conflict is Membership's memberlist.ConflictDelegate: memberlist found
// two live nodes with one name; NotifyAlive already refused the newer one.
type conflict Membership

var _ memberlist.ConflictDelegate = (*conflict)(nil)

// NotifyConflict logs the duplicate.
func (c *conflict) NotifyConflict(existing, other *memberlist.Node) {
	(*Membership)(c).warnRefused(other.Name, fmt.Errorf("%w: node id %q is live at %s and also claimed by %s", ErrDuplicateID, existing.Name, existing.Address(), other.Address()))
}

// refuse records the first fatal refusal: the node stops joining and
// Refused reports it.
func (m *Membership) refuse(err error) {
	if m.refusedErr.CompareAndSwap(nil, &err) {
		m.log.Error("Join refused; giving up", keyErr, err)
		close(m.refused)
	}
}

// Refused is closed when this node, before it joined, was refused for a
// duplicate node id or other cluster settings; Err then says why. The
// owner stops the node: retrying cannot succeed.
func (m *Membership) Refused() <-chan struct{} { return m.refused }

// Err returns the refusal Refused reports, or nil.
func (m *Membership) Err() error {
	if p := m.refusedErr.Load(); p != nil {
		return *p
	}
	return nil
}

// warnRefused logs a refused peer at warn level the first time a (peer,
// reason) pair is seen, at debug level afterwards: memberlist retries
// every gossip round.
func (m *Membership) warnRefused(peer string, err error) {
	key := peer + "\x00" + err.Error()
	m.mu.Lock()
	seen := m.refusals[key]
	if !seen && len(m.refusals) < maxRefusalsLogged {
		m.refusals[key] = true
	}
	m.mu.Unlock()
	if seen {
		m.log.Debug("Refusing peer", keyNode, peer, keyErr, err)
		return
	}
	m.log.Warn("Refusing peer", keyNode, peer, keyErr, err)
}

// maxRefusalsLogged bounds the set of refusals already logged at warn
// level; beyond it new ones are logged at warn every time.
const maxRefusalsLogged = 1024
