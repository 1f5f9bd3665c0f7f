package adminapi

import "time"

// Paths served on the admin port.
const (
	// PathHealthz answers 200 while the process is up.
	PathHealthz = "/healthz"
	// PathReadyz answers 200 once the node has joined, caught up and serves clients.
	PathReadyz = "/readyz"
	// PathMetrics serves Prometheus metrics.
	PathMetrics = "/metrics"
	// PathNode serves GET: NodeStatus.
	PathNode = "/admin/v1/node"
	// PathCluster serves GET: ClusterStatus.
	PathCluster = "/admin/v1/cluster"
	// PathDrain serves POST (start draining, idempotent: DrainStarted), GET
	// (DrainStatus) and DELETE (cancel the drain, or rejoin as joining if the
	// node already left: the operator's scale-down reversal; idempotent).
	PathDrain = "/admin/v1/drain"
	// PathRemove serves POST RemoveRequest: remove a dead node from the roster.
	PathRemove = "/admin/v1/remove"
	// PathGoaway serves POST: send goaway to every client and stop accepting
	// new ones, without handing shards off (a restart: the pod's preStop
	// hook). Idempotent. The node keeps its replicas and reports not ready.
	PathGoaway = "/admin/v1/goaway"
)

// NodeState is a node's lifecycle state in the roster. Only the node itself
// moves between joining, active and draining; left is final.
type NodeState string

// Lifecycle states.
const (
	// StateJoining: in the roster, still receiving the shards it now replicates.
	StateJoining NodeState = "joining"
	// StateActive: in the roster and caught up.
	StateActive NodeState = "active"
	// StateDraining: handing its shards to the nodes that take them over.
	StateDraining NodeState = "draining"
	// StateLeft: out of the roster; owns no data.
	StateLeft NodeState = "left"
)

// OwnsData reports whether a node in state s is part of the data-owning roster.
func (s NodeState) OwnsData() bool {
	return s == StateJoining || s == StateActive || s == StateDraining
}

// NodeStatus is GET /admin/v1/node: one node's own view of itself.
type NodeStatus struct {
	// ID is the stable node id (the StatefulSet pod name in Kubernetes).
	ID string `json:"id"`
	// State is the node's lifecycle state.
	State NodeState `json:"state"`
	// Version is the node's build version.
	Version string `json:"version"`
	// Epoch is the roster epoch this node has converged to.
	Epoch uint64 `json:"epoch"`
	// ShardsReplicated counts the shards this node holds a replica of.
	ShardsReplicated int `json:"shardsReplicated"`
	// ShardsCoordinated counts the shards this node coordinates.
	ShardsCoordinated int `json:"shardsCoordinated"`
	// Receiving lists the shards still streaming to this node.
	Receiving []ShardTransfer `json:"receiving,omitempty"`
	// Connections is the number of open client connections.
	Connections int `json:"connections"`
	// GossipKeys are fingerprints of the gossip keys this node holds,
	// primary first: the first 8 bytes of each key's SHA-256, in hex. An
	// operator rotating the keyring waits until every node reports the
	// expected list before the next step. Empty with unencrypted gossip.
	GossipKeys []string `json:"gossipKeys,omitempty"`
	// PeerCAs are fingerprints of the CA certificates the peer transport
	// trusts (first 8 bytes of the SHA-256 of the DER, in hex), in file
	// order. Empty without peer TLS.
	PeerCAs []string `json:"peerCAs,omitempty"`
	// PeerCertNotAfter is the expiry of this node's peer certificate.
	// Zero without peer TLS.
	PeerCertNotAfter time.Time `json:"peerCertNotAfter,omitzero"`
	// Disk is the data disk's free space as the store's guard last saw it.
	Disk DiskStatus `json:"disk"`
}

// DiskStatus is a node's data disk as its store's free-space guard sees it
// (docs/failure-recovery.md, "Disk full").
type DiskStatus struct {
	// FreeBytes is the free space of the data directory's filesystem.
	FreeBytes uint64 `json:"freeBytes"`
	// ReserveBytes is the free space below which the node refuses writes
	// (--store-min-free-mib); 0: no guard.
	ReserveBytes uint64 `json:"reserveBytes"`
	// Low is set while free space is below the reserve: the node refuses
	// writes that add data, coordinates no writes and serves reads.
	Low bool `json:"low"`
}

// CaughtUp reports whether the node is active and receives no shard.
func (n NodeStatus) CaughtUp() bool {
	return n.State == StateActive && len(n.Receiving) == 0
}

// ShardTransfer is one shard replica in flight to a node.
type ShardTransfer struct {
	// Shard is the shard number, in [0, shard count).
	Shard int `json:"shard"`
	// From is the node id streaming the shard.
	From string `json:"from,omitempty"`
	// To is the node id receiving the shard.
	To string `json:"to,omitempty"`
	// BytesRemaining is an estimate of the bytes still to copy.
	BytesRemaining int64 `json:"bytesRemaining"`
	// KeysRemaining is an estimate of the keys still to copy.
	KeysRemaining int64 `json:"keysRemaining"`
}

// ClusterStatus is GET /admin/v1/cluster: the answering node's view of the cluster.
type ClusterStatus struct {
	// Epoch is the roster epoch of this view.
	Epoch uint64 `json:"epoch"`
	// Shards is the fixed shard count of the cluster.
	Shards int `json:"shards"`
	// ReplicationFactor is R, the replicas per shard.
	ReplicationFactor int `json:"replicationFactor"`
	// Members is the roster plus the nodes known to have left, with liveness.
	Members []Member `json:"members"`
	// UnderReplicated lists the shards with a replica missing, down or still catching up.
	UnderReplicated []int `json:"underReplicated,omitempty"`
	// Moves lists the shard replicas in flight.
	Moves []ShardTransfer `json:"moves,omitempty"`
}

// Member returns the roster entry for node id, if present.
func (c ClusterStatus) Member(id string) (Member, bool) {
	for _, m := range c.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Member is one node as seen in a ClusterStatus.
type Member struct {
	// ID is the stable node id.
	ID string `json:"id"`
	// State is the node's lifecycle state.
	State NodeState `json:"state"`
	// Alive is the failure detector's verdict.
	Alive bool `json:"alive"`
	// Version is the node's build version, as gossiped.
	Version string `json:"version,omitempty"`
	// Shards counts the shard replicas placement assigns to the node.
	Shards int `json:"shards"`
	// ClientAddr, PeerAddr and AdminAddr are the node's advertised addresses.
	ClientAddr string `json:"clientAddr,omitempty"`
	PeerAddr   string `json:"peerAddr,omitempty"`
	AdminAddr  string `json:"adminAddr,omitempty"`
}

// DrainStarted is the answer to POST /admin/v1/drain.
type DrainStarted struct {
	// Operation identifies the drain; a repeated POST returns the same id.
	Operation string `json:"operation"`
}

// DrainStatus is GET /admin/v1/drain.
type DrainStatus struct {
	// Operation is the drain's id, empty when no drain was started.
	Operation string `json:"operation,omitempty"`
	// Started reports whether a drain was requested.
	Started bool `json:"started"`
	// ShardsLeft counts the shard replicas this node still has to hand off.
	ShardsLeft int `json:"shardsLeft"`
	// BytesLeft estimates the bytes still to hand off.
	BytesLeft int64 `json:"bytesLeft"`
	// Done reports that every shard was handed off and confirmed by its new replica.
	Done bool `json:"done"`
}

// RemoveRequest is the body of POST /admin/v1/remove.
type RemoveRequest struct {
	// Node is the id of the dead node to remove from the roster.
	Node string `json:"node"`
}

// ErrorResponse is the JSON body of any non-2xx admin answer.
type ErrorResponse struct {
	// Error says what went wrong.
	Error string `json:"error"`
}

// Paths for tests, chaos runs and operators debugging replicas. They read
// this node's own store only (no routing to other nodes).
const (
	// PathShards serves GET: ShardsStatus, every shard this node replicates.
	PathShards = "/admin/v1/shards"
	// PathDebugMessages serves GET ?app=A&cid=C: DebugMessages, the
	// conversation's messages as stored on this node.
	PathDebugMessages = "/admin/v1/debug/messages"
	// PathFaults serves POST FaultRequest when imnode runs with
	// --fault-injection (404 otherwise): partition this node's peer transport
	// from the given nodes, or heal.
	PathFaults = "/admin/v1/faults"
)

// ShardsStatus is GET /admin/v1/shards.
type ShardsStatus struct {
	// Shards lists the shards this node replicates, ascending.
	Shards []ShardStatus `json:"shards"`
}

// ShardStatus is one local shard replica.
type ShardStatus struct {
	// Shard is the shard number.
	Shard int `json:"shard"`
	// Coordinator reports whether this node coordinates the shard now (it
	// holds the shard's lease).
	Coordinator bool `json:"coordinator"`
	// LeaseHolder is the node this node believes holds the shard's
	// coordinator lease (itself, the node it granted it to, or the one a
	// replica named); empty when it knows of none.
	LeaseHolder string `json:"leaseHolder,omitempty"`
	// Ready reports whether the replica has caught up (it may coordinate).
	Ready bool `json:"ready"`
	// Keys counts the stored keys of the shard (tombstones included).
	Keys int64 `json:"keys"`
	// Digest is a hash of every (key, version) of the shard, hex: two
	// replicas with equal digests hold the same data.
	Digest string `json:"digest"`
}

// DebugMessages is GET /admin/v1/debug/messages.
type DebugMessages struct {
	// Replica reports whether this node replicates the conversation's shard.
	Replica bool `json:"replica"`
	// Messages are the stored messages in (timestamp, id) order.
	Messages []DebugMessage `json:"messages"`
}

// DebugMessage is one stored message.
type DebugMessage struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	From      string `json:"from,omitempty"`
	Data      string `json:"data,omitempty"`
}

// FaultRequest is the body of POST /admin/v1/faults.
type FaultRequest struct {
	// Partition drops all peer traffic to and from these node ids.
	Partition []string `json:"partition,omitempty"`
	// Heal removes every partition.
	Heal bool `json:"heal,omitempty"`
	// DiskFreeMiB, when set, makes the node believe its data disk has this
	// many MiB free from its store's next check (within a second); a
	// negative value gives it the real free space again.
	DiskFreeMiB *int64 `json:"diskFreeMiB,omitempty"`
}
