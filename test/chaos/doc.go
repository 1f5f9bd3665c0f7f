// Package chaos checks imcluster's guarantee (docs/replication.md): an
// acknowledged message survives the loss of any R-W nodes, disks included,
// and a partition, and after the faults heal every replica holds the same
// data.
//
// The tests start real imnode processes on 127.0.0.1 through test/harness
// (R=3, W=2, --fault-injection), run concurrent senders (the Go client)
// across several conversations and nodes that record every message the
// server acknowledged (Load, Ledger), and meanwhile SIGKILL and restart
// nodes, partition one from the others and heal, add a node and drain
// another, or wipe a node's disk. Once the cluster settles (Settle: equal
// shard digests on every replica) Verify reads each conversation from every
// node that replicates it and checks that every acknowledged message is
// present with its acknowledged timestamp, ids are unique, timestamps
// strictly increase, a message first sent after another was acknowledged
// has a later timestamp, and all replicas hold identical lists.
//
// `go test ./test/chaos` (part of `make test-go`) does a short run of about
// a minute; `make chaos CHAOS_DURATION=10m` a long one that injects random
// faults for that long and prints a summary (Summary). CHAOS_SEED replays
// the choices of a run, CHAOS_ARTIFACTS is where a failed run keeps the
// full node logs, IMNODE_BIN runs a prebuilt imnode (see test/harness).
// A run also fails if any node process crashed, even one the harness
// relaunched, and if any sender saw an error caused by a lost coordinator
// or a moving lease (a 4200 naming it, or no answer within the SDK's
// command timeout): failover is a pause, not an error. The ledger records
// every client-visible error with its answer (code, reason, detail), node,
// command and the fault in progress, and the summary groups them; dropped
// sockets of a killed or stopped node are counted and allowed.
//
// What it must not do: import node internals (it talks to the nodes only
// through the client protocol and the admin API), bind anything but
// 127.0.0.1, or loop without a bound: every wait polls with a deadline and
// the senders stop with the run.
package chaos
