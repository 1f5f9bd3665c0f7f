package membership

import (
	"maps"
	"slices"
	"strings"

	"github.com/imcluster/imcluster/node/ring"
)

// Member is one node as a Snapshot sees it.
type Member struct {
	Meta
	// Live is true while memberlist considers the node alive or suspect;
	// false when it is dead, left gossip, or was never seen directly (known
	// only from the roster table).
	Live bool
}

// Snapshot is an immutable view of the cluster, published after each burst
// of membership events. It is shared: do not modify it or its slices.
type Snapshot struct {
	// Self is this node's id.
	Self string
	// Epoch is the roster epoch: the sum of all entries' seqs.
	Epoch uint64
	// Members are all known nodes, including left ones, sorted by id.
	Members []Member
}

func newSnapshot(self string, table map[string]entry, metas map[string]Meta, live map[string]bool) *Snapshot {
	s := &Snapshot{Self: self, Members: make([]Member, 0, len(table))}
	for _, id := range slices.Sorted(maps.Keys(table)) {
		e := table[id]
		s.Epoch += e.Seq
		mt := metas[id]
		mt.ID, mt.State, mt.Seq = id, e.State, e.Seq
		s.Members = append(s.Members, Member{Meta: mt, Live: live[id]})
	}
	return s
}

func (s *Snapshot) equal(o *Snapshot) bool {
	return s != nil && o != nil && s.Epoch == o.Epoch && s.Self == o.Self && slices.Equal(s.Members, o.Members)
}

// Member returns node id's record.
func (s *Snapshot) Member(id string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(s.Members, id, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	if !ok {
		return Member{}, false
	}
	return s.Members[i], true
}

// IsLive reports whether node id is alive (or suspect) in gossip. It is a
// valid liveness function for ring.Ring.Coordinator.
func (s *Snapshot) IsLive(id string) bool {
	m, ok := s.Member(id)
	return ok && m.Live
}

// Roster returns the members as ring input (left ones included; the ring
// ignores them for placement). The slice is newly allocated.
func (s *Snapshot) Roster() []ring.Member {
	out := make([]ring.Member, len(s.Members))
	for i, m := range s.Members {
		out[i] = ring.Member{ID: m.ID, State: m.State}
	}
	return out
}
