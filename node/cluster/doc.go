// Package cluster makes a node a member of an imcluster cluster
// (docs/architecture.md). It owns the roster and the node's lifecycle:
// gossip membership, the peer transport (and which package serves each peer
// method), the placement ring built from the roster, peer liveness and
// suspicion, join, drain, remove and the admin status. It builds and wires
// the packages that do the work, each behind its own small interfaces,
// which the Cluster implements (Peers):
//
//   - replica: per shard replica the coordinator lease, the hybrid logical
//     clock, quorum writes and the store.KV the domain packages use,
//     catch-up, hand-off and anti-entropy.
//   - route: the gateway's engine, the one place that decides where a
//     command runs (at its conversation shard's coordinator).
//   - presence: the session registry of each client shard and the push
//     fan-out to the gateways that hold the recipients.
//
// Membership is not ownership: only lifecycle steps (join, drain, remove)
// change the roster and so the placement; a node that is merely down keeps
// its replicas and catches up when it returns.
package cluster
