package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/store"
)

// Formation errors: a start that would fork or mis-join the cluster.
var (
	// ErrNeedJoin: the start would form a cluster it must not.
	ErrNeedJoin = errors.New("node: refusing to start")
	// ErrIdentity: the data directory belongs to another node, cluster
	// or shard count, or to a newer imnode.
	ErrIdentity = errors.New("node: data directory mismatch")
)

// formation is what the identity check decided for this start.
type formation struct {
	// id is the directory's identity (written before the node joins).
	id store.Identity
	// isNew: the node has never been a member; it joins only a formed
	// cluster and learns the cluster id from it.
	isNew bool
	// bootstrap: the node forms a new cluster (it does not wait for seeds).
	bootstrap bool
}

// identity guards the data directory's identity file after Start: the
// membership loop reports what the node learns (OnIdentity).
type identity struct {
	mu  sync.Mutex
	dir string
	id  store.Identity
}

// checkIdentity reads (or creates) the identity of the data directory and
// decides how this start forms or joins its cluster. st is open, so the
// directory's lock is held.
func (n *Node) checkIdentity(st *store.Store) (formation, error) {
	cfg := &n.cfg
	want := store.Identity{ClusterID: cfg.ClusterID, NodeID: cfg.NodeID, Shards: cfg.Shards, DataFormat: store.DataFormat}
	id, err := store.ReadIdentity(cfg.DataDir)
	switch {
	case errors.Is(err, store.ErrNoIdentity):
		return n.firstIdentity(st, want)
	case err != nil:
		return formation{}, err
	}
	if err := id.Check(want); err != nil {
		return formation{}, fmt.Errorf("%w: %s: %w", ErrIdentity, cfg.DataDir, err)
	}
	f := formation{id: id}
	switch {
	case id.ClusterID == "" && !id.Clustered && cfg.Bootstrap:
		// Started once as a joining node, never joined: bootstrap now.
		f.bootstrap = true
		f.id.ClusterID = newClusterID(cfg.ClusterID)
	case id.ClusterID == "" && !id.Clustered && len(cfg.Join) == 0:
		return f, fmt.Errorf("%w: this node never joined a cluster: give --join (gossip address of a running node) or --bootstrap to create a new cluster", ErrNeedJoin)
	case id.ClusterID == "" && !id.Clustered:
		f.isNew = true
	case len(cfg.Join) == 0 && id.Clustered:
		return f, fmt.Errorf("%w: this node is a member of cluster %q with other nodes; alone it would form a second cluster: give --join (gossip addresses of running nodes)", ErrNeedJoin, id.ClusterID)
	case cfg.Bootstrap:
		n.log.Info("Ignoring --bootstrap: the data directory already belongs to a cluster", "clusterId", id.ClusterID)
	}
	if f.id != id {
		if err := store.WriteIdentity(cfg.DataDir, f.id); err != nil {
			return f, err
		}
	}
	return f, nil
}

// firstIdentity creates the identity of a directory that has none: a new
// one, or one written before identity files (it has data).
func (n *Node) firstIdentity(st *store.Store, want store.Identity) (formation, error) {
	cfg := &n.cfg
	f := formation{id: want}
	switch {
	case hasData(st):
		// A node from before identity files: it belongs to a cluster (of
		// unknown id unless --cluster-id names it).
		f.id.Clustered = len(cfg.Join) > 0
		n.log.Info("Recording the identity of a data directory written before identity files", "clusterId", want.ClusterID)
	case cfg.Bootstrap:
		f.bootstrap = true
		f.id.ClusterID = newClusterID(cfg.ClusterID)
		n.log.Info("Bootstrapping a new cluster", "clusterId", f.id.ClusterID)
	case len(cfg.Join) == 0:
		return f, fmt.Errorf("%w: a new node needs --join (gossip address of a running node), or --bootstrap to create a new cluster", ErrNeedJoin)
	default:
		// Joining: the cluster id is learned from the cluster (and must
		// equal --cluster-id if given).
		f.isNew = true
		f.id.ClusterID = ""
	}
	if err := store.WriteIdentity(cfg.DataDir, f.id); err != nil {
		return f, err
	}
	return f, nil
}

// newClusterID returns the id a bootstrapping node gives its cluster.
func newClusterID(given string) string {
	if given != "" {
		return given
	}
	return rand.Text()
}

// hasData reports whether the store holds any key.
func hasData(st *store.Store) bool {
	found := false
	_ = st.Scan(nil, store.ShardEnd(0xffff), false, func(_, _ []byte) (bool, error) {
		found = true
		return false, nil
	})
	return found
}

// record writes what the membership learned into the identity file. It is
// called from the membership loop.
func (i *identity) record(learned membership.Identity) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	next := i.id
	if next.ClusterID == "" {
		next.ClusterID = learned.ClusterID
	}
	next.Clustered = next.Clustered || learned.Clustered
	if next == i.id {
		return nil
	}
	if err := store.WriteIdentity(i.dir, next); err != nil {
		return err
	}
	i.id = next
	return nil
}

// formationConfig gives the membership what it checks at join: the
// cluster id (for a new node, the one it expects: --cluster-id), whether
// the node is new, the cluster settings, and where to report what it
// learns.
func (n *Node) formationConfig(mc *membership.Config, f formation) {
	mc.ClusterID = f.id.ClusterID
	if mc.ClusterID == "" {
		mc.ClusterID = n.cfg.ClusterID
	}
	mc.New = f.isNew
	mc.Shards, mc.ReplicationFactor, mc.WriteQuorum = n.cfg.Shards, n.cfg.ReplicationFactor, n.cfg.WriteQuorum
	mc.OnIdentity = func(learned membership.Identity) {
		if err := n.identity.record(learned); err != nil {
			n.log.Error("Recording the cluster identity failed", "err", err)
			return
		}
		n.log.Info("Recorded the cluster identity", "clusterId", learned.ClusterID, "clustered", learned.Clustered)
	}
}
