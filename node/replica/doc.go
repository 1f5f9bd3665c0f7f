// Package replica owns the shard replicas of one node (Set): for each shard
// this node replicates, its coordinator lease (lease.go), the versions its
// writes get from the node's hybrid logical clock (hlc.go), quorum writes
// and the store.KV the domain packages read and write through (kv.go),
// catch-up and hand-off when the placement changes (sync.go), catch-up by
// the other replicas' change logs (catchup.go) and periodic anti-entropy by
// range digests (antientropy.go).
//
//   - Leases: a node coordinates a shard only while it holds the shard's
//     lease, granted by a majority of its replicas, so one node at a time
//     assigns a conversation's timestamps; taking a lease over from another
//     node includes a catch-up.
//   - KV: each key goes to the coordinator of its shard (the lease holder;
//     preferably the first live, caught-up replica of the shard's replica
//     list); the coordinator stamps writes with a hybrid-logical-clock
//     version and stores them pending (durable, invisible) on itself and
//     the shard's other replicas; once W of them hold a write it makes it
//     visible and acknowledges, and tells the others to (quorum.go). A
//     write whose caller gives up in flight is settled by its coordinator
//     in the background while the shard serves nothing there; a write that
//     fails (fewer than W hold it, or the lease or term changed) makes its
//     coordinator step down, and the next holder resolves the shard's
//     pending writes (rolls forward those of the last term, drops older
//     ones) before it serves, so a write is visible only once W replicas
//     hold it and a resend is stored once.
//     Replicas merge records last-writer-wins by version (store package),
//     so they converge whatever the order of arrival.
//   - Sync: catch-up before coordinating, rebalancing when the roster
//     changes (new replicas pull the shard from the old ones while already
//     receiving new writes) and periodic anti-entropy by shard digests,
//     then per-bucket range digests, copying only what differs. A catch-up
//     from a replica this node caught up from before copies only the keys
//     that replica logged since (its change log).
//
// The Set sees the cluster only through Peers (placement, liveness, the
// peer transport) and never imports the cluster package.
package replica
