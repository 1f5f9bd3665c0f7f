// Package store owns the node's single Pebble database and is the only
// importer of pebble.
//
// It knows keys, not conversations: a key is a shard prefix, the app, a
// one-byte family and order-preserving components (see keys.go). Every key of
// a shard is therefore one contiguous range (what rebalancing streams), and one
// conversation's messages are one range sorted by (timestamp, message id)
// (what history queries scan). Values are opaque bytes encoded by the owning
// domain package, except field docs (fielddoc.go): records written as named
// fields with Batch.MergeFields, replicated with a version per field so
// concurrent updates of different fields all survive, and read back as a
// fields value (DecodeFields).
//
// Point reads are served from a read cache of hot records, bounded in
// bytes and kept coherent by every commit (cache.go), and a look-up of a
// de-duplication key the shard's absence filter lacks is answered without
// Pebble (absent.go: Bloom filters fed by every commit, built by a
// goroutine that Open starts and Close stops). Every batch that
// makes replicated records visible also logs their keys in the shard's
// change log (changes.go, in memory), which a catch-up reads instead of the
// shard.
// DeleteShard removes a shard's records, change log, pending writes and
// recorded term together.
//
// Writes are acknowledged only after they are durable: Commit fsyncs the WAL.
// Pebble coalesces concurrent synchronous commits into one WAL fsync, which is
// the group commit the send path relies on for throughput. A batch marked
// SetNoSync (state a lost write merely leaves older: receiver acks, read
// pointers) skips its own fsync; the store's flusher goroutine, which Open
// starts and Close stops, syncs such writes within NoSyncFlushDelay
// (nosync.go).
//
// A free-space guard (diskguard.go) keeps the node off a full disk: a
// goroutine, which Open starts and Close stops, reads the data directory's
// free space every second and after every 16 MiB committed; below a reserve
// (Config.MinFreeBytes) commits that add data fail fast with ErrDiskLow
// while deletes and the replication protocol's own records still pass.
//
// Store is safe for concurrent use. Iteration callbacks must not retain the
// key or value slices they are given.
package store
