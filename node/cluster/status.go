package cluster

import (
	"fmt"
	"slices"

	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/store"
)

// State returns this node's lifecycle state as the admin API names it.
func (c *Cluster) State() adminapi.NodeState {
	switch p := c.DrainProgress(); {
	case p.Done:
		return adminapi.StateLeft
	case p.Started:
		return adminapi.StateDraining
	case c.active.Load():
		return adminapi.StateActive
	}
	return adminapi.StateJoining
}

// NodeStatus fills the cluster part of GET /admin/v1/node.
func (c *Cluster) NodeStatus() adminapi.NodeStatus {
	rg := c.ring.Load()
	mine := rg.ShardsOf(c.cfg.NodeID)
	st := adminapi.NodeStatus{
		ID: c.cfg.NodeID, State: c.State(), Epoch: rg.Epoch(),
		ShardsReplicated: len(mine), ShardsCoordinated: len(c.Coordinated()),
	}
	for _, s := range mine {
		if !c.rep.Ready(uint16(s)) {
			st.Receiving = append(st.Receiving, c.receiving(uint16(s)))
		}
	}
	return st
}

// receiving reports the catch-up of shard: the source and the keys and
// bytes left to copy from it (-1 while unknown: the shard waits its turn
// and its source did not tell its size yet).
func (c *Cluster) receiving(shard uint16) adminapi.ShardTransfer {
	from, keys, bytes := c.rep.Progress(shard)
	return adminapi.ShardTransfer{Shard: int(shard), From: from, To: c.cfg.NodeID, KeysRemaining: keys, BytesRemaining: bytes}
}

// ClusterStatus is GET /admin/v1/cluster from this node's view.
func (c *Cluster) ClusterStatus() adminapi.ClusterStatus {
	rg := c.ring.Load()
	snap := c.snap.Load()
	out := adminapi.ClusterStatus{Epoch: rg.Epoch(), Shards: c.cfg.Shards, ReplicationFactor: c.cfg.ReplicationFactor}
	counts := map[string]int{}
	for s := range c.cfg.Shards {
		reps := rg.Replicas(s)
		for _, id := range reps {
			counts[id]++
		}
		under := len(reps) < c.cfg.ReplicationFactor && len(rg.Placed()) >= c.cfg.ReplicationFactor
		for _, id := range reps {
			if !c.live(id) || (id == c.cfg.NodeID && !c.rep.Ready(uint16(s))) {
				under = true
			}
		}
		if under {
			out.UnderReplicated = append(out.UnderReplicated, s)
		}
		if slices.Contains(reps, c.cfg.NodeID) && !c.rep.Ready(uint16(s)) {
			out.Moves = append(out.Moves, c.receiving(uint16(s)))
		}
	}
	for _, m := range snap.Members {
		if c.started.Load() && c.ml.Pruned(m.ID) {
			continue // left long ago: kept in the roster, no longer listed
		}
		out.Members = append(out.Members, adminapi.Member{
			ID: m.ID, State: adminapi.NodeState(m.State.String()), Alive: m.Live || m.ID == c.cfg.NodeID,
			Version: m.Version, Shards: counts[m.ID],
			ClientAddr: m.ClientAddr, PeerAddr: m.PeerAddr, AdminAddr: m.AdminAddr,
		})
	}
	return out
}

// ShardsStatus is GET /admin/v1/shards: this node's replicas. The digest
// is the summary anti-entropy compares (keys and whole values), so equal
// digests mean equal records.
func (c *Cluster) ShardsStatus() (adminapi.ShardsStatus, error) {
	var out adminapi.ShardsStatus
	out.Shards = []adminapi.ShardStatus{}
	for _, s := range c.ring.Load().ShardsOf(c.cfg.NodeID) {
		rd, err := c.st.ShardRangeDigest(uint16(s), ^uint64(0))
		if err != nil {
			return out, err
		}
		out.Shards = append(out.Shards, adminapi.ShardStatus{
			Shard: s, Coordinator: c.Coordinates(uint16(s)), LeaseHolder: c.rep.KnownHolder(uint16(s)), Ready: c.rep.Ready(uint16(s)),
			Keys: rd.Keys(store.AllBuckets), Digest: fmt.Sprintf("%016x", rd.Summary()),
		})
	}
	return out, nil
}

// LocalMessages reads a conversation's messages from this node's store
// only.
func (c *Cluster) LocalMessages(app, cid string) (adminapi.DebugMessages, error) {
	shard := c.ConvShard(app, cid)
	out := adminapi.DebugMessages{Replica: c.ring.Load().IsReplica(int(shard), c.cfg.NodeID), Messages: []adminapi.DebugMessage{}}
	prefix := conversation.MessagePrefix(shard, app, cid)
	err := c.rep.LocalScan(prefix, store.PrefixEnd(prefix), func(_, v []byte) (bool, error) {
		m, err := conversation.DecodeStoredMessage(v)
		if err != nil {
			return false, err
		}
		out.Messages = append(out.Messages, adminapi.DebugMessage{ID: m.ID, Timestamp: m.Timestamp, From: m.From, Data: m.Data})
		return true, nil
	})
	return out, err
}
