// Package membership is the cluster's failure detector and roster gossip: a
// wrapper over hashicorp/memberlist that carries each node's state record
// (id, addresses, lifecycle state, version) and converges every node on the
// same roster and roster epoch.
//
// It owns the memberlist instance (Shutdown also waits, bounded, for the
// goroutines memberlist leaves running: linger.go), the roster table and one
// goroutine that coalesces bursts of events into immutable Snapshots, swapped
// with an atomic.Pointer. It decides nothing about shards: the owner builds a ring
// from Snapshot.Roster. Liveness (memberlist alive/suspect versus dead) never
// changes the roster; only lifecycle steps do (docs/architecture.md).
//
// # Roster and epoch
//
// Every node's roster entry is (id, state, seq). seq is the entry's
// incarnation: it grows by one on every state change, made by the node
// itself (SetState) or by an admin for a dead node (Remove). Entries spread
// three ways: in the node's memberlist meta (so a state change rides on
// memberlist's alive gossip within a few gossip intervals), as
// user broadcasts (Remove), and as the whole table in push/pull exchanges
// (anti-entropy, and how a joining node learns about nodes that left long
// ago). Merging keeps, per node, the entry with the higher seq (equal seq:
// the later lifecycle state), so merges commute and every node converges to
// the same table.
//
// The roster epoch is the sum of all seqs in the table. It is derived, not
// agreed: equal tables give equal epochs on every node, and every change a
// node sees strictly increases it (entries are never forgotten; a left node
// stays as a tombstone). Two nodes that have seen different concurrent
// changes can transiently have equal epochs with different tables; ring
// signatures tell those apart if it matters.
//
// A node that restarts without its old seq learns it from the table
// (push/pull on join): with the same state it adopts the seq (no epoch
// change); with a different state it re-announces with seq+1. A node that
// finds itself removed (state left with a higher seq) accepts it, so its
// owner sees state left in the Snapshot and must not serve its stale data;
// except a node that starts in state joining: it is a new incarnation of
// the id (the replace path: same StatefulSet ordinal, empty disk) and
// re-announces joining over the old tombstone.
//
// # Meta
//
// The meta record is binary: format byte, state byte, uvarint seq, five
// uvarint-length-prefixed strings (id, client, peer and admin address,
// version), then the cluster settings: cluster id (string), shards,
// replication factor and write quorum (uvarints) and a flags byte (bit 0:
// new node). Format 1, without the settings, is still decoded. It must fit
// memberlist's 512-byte limit; Config.Validate checks the worst case.
//
// # Join checks
//
// Every alive message passes an AliveDelegate and every join's push/pull a
// MergeDelegate, on both sides (checks.go): a node whose cluster id, shard
// count, replication factor or write quorum differs from this node's is
// refused, and so is a live node id at a second address. A node that has
// not joined yet and is refused gives up (Refused) and its owner exits:
// retrying cannot help. A new node (Config.New) merges only with nodes
// that are not new, adopting their cluster id: two new nodes never form a
// cluster by themselves; only a bootstrapped node starts one.
//
// # Timing
//
// DefaultConfig tunes memberlist for a LAN of a few dozen pods: gossip every
// 100ms to 3 nodes (a state change reaches all nodes in well under a second),
// probe every 1s with a 500ms timeout, suspicion multiplier 4 (a dead node
// is declared dead after about 4-8s, long enough to ride out a GC pause or a
// brief network hiccup, short enough for clients to fail over quickly), full
// push/pull every 15s. Events are coalesced until 200ms pass without a new
// one, or at most 2s, before a new Snapshot is published. DefaultLocalConfig
// shrinks all of that for tests on 127.0.0.1.
package membership
