// Package cluster makes a node a member of an imcluster cluster (DESIGN.md
// sections 4 and 5). It owns the node's gossip membership, its peer
// transport and the placement ring built from the roster, and on top of them:
//
//   - Leases: a node coordinates a shard only while it holds the shard's
//     lease, granted by a majority of its replicas (lease.go), so one node
//     at a time assigns a conversation's timestamps; taking a lease over
//     from another node includes a catch-up.
//   - KV: the store.KV the domain packages read and write through. Each key
//     goes to the coordinator of its shard (the lease holder; preferably the
//     first live, caught-up replica of the shard's replica list); the
//     coordinator stamps writes with a
//     hybrid-logical-clock version, applies them durably and replicates them
//     to the shard's other replicas, acknowledging after W of them hold the
//     write. Replicas merge records last-writer-wins by version (store
//     package), so they converge whatever the order of arrival.
//   - Router: the gateway's Engine. It forwards each command to the
//     coordinator of the conversation shard it touches, where the
//     conversation engine serializes the conversation's writes.
//   - Delivery: the engine's Deliverer. A session registry in each client's
//     client shard (soft state, re-registered on roster changes) names the
//     gateways holding the client's sessions; pushes go to exactly those.
//   - Sync: catch-up before coordinating, rebalancing when the roster
//     changes (new replicas pull the shard from the old ones while already
//     receiving new writes) and periodic anti-entropy by shard digests,
//     then per-bucket range digests, copying only what differs.
//
// Membership is not ownership: only lifecycle steps (join, drain, remove)
// change the roster and so the placement; a node that is merely down keeps
// its replicas and catches up when it returns.
package cluster
