package wire

// Peer transport methods. Requests and messages carry hand-encoded payloads
// (Enc, Dec): fields are uvarint integers and length-prefixed byte strings,
// in the order each method's encoder writes them. The numbers are on the
// wire: never renumber, only append.
const (
	Get            uint16 = iota + 1 // request: shard, key -> found, value (replica)
	Scan                             // request: lower, upper, reverse, limit -> pairs, more (replica)
	Write                            // request: shard, ops -> () ; the receiver coordinates (replica)
	Replicate                        // request: shard, versioned ops -> () (replica)
	Command                          // request: caller, command -> response | protocol error (route)
	Online                           // request: app, ids -> online ids (presence)
	Register                         // request: registrations[, gateway boot id] -> () (presence)
	SyncScan                         // request: shard, after, limit -> raw pairs, more (replica)
	Digest                           // request: shard -> digest, keys (replica)
	EnsureSynced                     // request: shard -> () once this node holds the shard (replica)
	MsgFanout                        // message: app, ids, except, frame[, handed on] -> to the client shard's coordinator (presence)
	MsgPush                          // message: app, ids, except, frame -> to a gateway (presence)
	MsgKickTag                       // message: app, client, tag, device, except session (presence)
	MsgSessionGone                   // message: app, client, session, clean (route)
	Kick                             // request: app, client -> sessions closed on the receiver (presence)
	Resync                           // request: shards -> (); the receiver catches them up (sent by earlier builds) (replica)
	Ping                             // request: () -> (); reachability over the peer transport (cluster)
	Lease                            // request: candidate's lease request -> per-shard grants (replica)
	LeaseRelease                     // request: shards -> (); the holder gives its leases up (replica)
	RangeDigest                      // request: shard, cutoff -> per-range digests (replica)
	ShardSize                        // request: shard -> keys, bytes (replica)
	Will                             // request: caller, direct command, message id -> () (route)
	Prepare                          // request: shard, epoch, id, versioned ops -> () ; stored pending (replica)
	CommitNotice                     // message: shard, epoch, ids -> the pending writes are committed (replica)
	PendingScan                      // request: shard, after epoch, after id -> epoch, pending writes, more (replica)
	CommitWrite                      // request: shard, epoch, id, versioned ops -> () ; applied visible (replica)
	Resolve                          // request: shard, epoch -> () ; the term begins, older pending dropped (replica)
	MsgReregister                    // message: () -> the receiver registers its sessions at the sender again (presence)
	ChangeScan                       // request: shard, cursor, head, limit -> head, records of the keys changed after the cursor, more (replica)
	DiskLow                          // request: () -> whether the receiver's disk is below its reserve (replica)
)

// SkipEpochCheck lists the methods valid across roster epochs: replication,
// sync and registration carry their own checks (ready, replica sets).
func SkipEpochCheck(m uint16) bool {
	switch m {
	case Replicate, Register, SyncScan, Digest, EnsureSynced, Online, Kick, Resync, Ping,
		Lease, LeaseRelease, RangeDigest, ShardSize, Prepare, CommitNotice, PendingScan, CommitWrite, Resolve,
		ChangeScan, DiskLow:
		return true
	}
	return false
}
