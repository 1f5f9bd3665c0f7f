// Package conversation is the domain core of imnode: conversations, members,
// message sequencing, history, receipts, unread state, patches, moderation
// and reliable notifications, with the exact behaviour of the LeanCloud
// realtime protocol (its sections 3.4-3.15).
//
// It owns the conversation families of node/store: a conversation's record,
// messages (ordered by timestamp, message id), message-id index, patches and
// de-duplication tokens live in the conversation's shard
// (Shards.ConvShard(app, cid)); a client's conversation index, per
// conversation read/ack state and reliable notifications live in the client's
// shard (Shards.ClientShard(app, clientID)).
//
// A command writes its conversation's shard only, under the conversation's
// stripe lock; its effects in other shards (the members' index and read
// state, reliable notifications) go into the conversation's outbox in the
// same atomic batch and are applied, in order and idempotently, after the
// lock is released, by the command and, failing that, by the engine's
// drainer (outbox.go).
//
// Key layout (families of node/store, values JSON unless noted):
//
//	conv shard   FamConv      cid                      conversation record (field doc)
//	conv shard   FamMsg       cid, ts, mid             message (newest key = last message, lm); binary ones read too (msgcodec.go)
//	conv shard   FamMsgID     cid, mid                 8-byte big-endian ts; only for an id that does not carry its ts
//	conv shard   FamPatch     cid, patchTs, mid        PatchItem (protobuf)
//	conv shard   FamDedup     cid, sender, dt          ts, accepted-at, mid
//	conv shard   FamOrder     order, ^value, cid       empty: the order index of app-wide queries (order.go)
//	conv shard   FamOrder     order                    empty: the marker, the shard's index is complete
//	key shard    FamUnique    uniqueId | "tmp:"+id     cid (shard = ConvShard(app, key))
//	client shard FamClientConv clientId, cid           empty (the client's conversations)
//	client shard FamClientState clientId, cid          read/ack pointers (field doc)
//	client shard FamNotif     clientId, serverTs, nonce push frame (protobuf)
//	conv shard   FamOutbox    app, cid, seq, version (no app prefix) ops for another shard (outbox.go)
//
// A field doc (fields.go) stores one field per scalar, per member of each
// member set, per custom column and per role, each replicated with its own
// version: writes name only the fields that changed, so concurrent updates
// of different fields by two coordinators both survive.
//
// Message timestamps are strictly increasing per conversation (a per-stripe
// cache of the last assigned timestamp, rebuilt from the newest message key);
// message ids are 22-character URL-safe Base64 of 16 bytes: the message's
// timestamp (8 bytes big-endian, ms) and 8 random bytes, so lookupMessage
// reads a message by id at the timestamp its id carries and a send writes
// no FamMsgID entry. Ids that do not carry exactly their message's
// timestamp (ids of earlier builds, 16 random bytes; imported ids; a will
// message's id, given before its timestamp) are found through FamMsgID,
// which every write of such a message keeps.
//
// Receiver acks and reads use two bounded in-memory structures, each
// trusted only while this node coordinates the conversation's shard under
// one lease epoch: what the engine knows of a conversation's recent
// messages, so an ack or read whose messages asked for no receipt reads
// none of them (recent.go), and the client states acks and reads committed,
// so they need not read them back (states.go).
//
// It must not know about sockets, sessions or authentication: the gateway
// decodes frames, authenticates, calls Engine.Handle and writes the response,
// and implements Deliverer for pushes. Conversation-action signatures are the
// gateway's concern.
//
// Every change is committed durably (fsync'd batch) before any push or
// response reports it ("persist before push"). Pushes are delivered without
// holding a lock, in commit order per conversation (see node/LOCKING.md).
//
// Queries with a non-empty where that pin neither objectId nor a member are
// app-wide: sorted by -lm (the default) or -updatedAt they walk the shards'
// order indexes merged in order (order.go); any other sort scans every
// conversation of the app. Either way the shards are read at their
// coordinators, at most scatterParallelism at once (scatter), within the
// app's scan budget.
package conversation
