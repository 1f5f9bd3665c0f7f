// Package transport is the peer transport between imcluster nodes:
// request/response calls with deadlines and one-way messages (pushes) over
// persistent, multiplexed TCP connections, stamped with the sender's roster
// epoch.
//
// It owns the connections, their goroutines and their queues. It knows
// nothing of shards, conversations or protobuf: payloads are opaque bytes
// and methods are small integers the caller defines. It must not block a
// caller beyond the caller's deadline, and it never panics on bytes from the
// network.
//
// # Framing: length-prefixed binary frames over TCP, not gRPC
//
// A frame is a 4-byte big-endian length, a 1-byte type and a fixed binary
// header per type (request id, epoch, timeout, method, status), followed by
// the opaque payload (the caller's protobuf). See frame.go. We chose this
// over gRPC because:
//
//   - Memory bounds and backpressure are ours to state and test: a bounded
//     send queue per peer that fails fast when full, a cap on requests in
//     flight, a write deadline that drops a peer which stops reading, and a
//     cap on frame size. gRPC layers HTTP/2 flow control, its own buffering
//     and retries under these, which makes "memory stays bounded when a peer
//     stops reading" a property of someone else's code.
//   - The epoch check, fail-fast-when-down and the fault-injection hooks the
//     chaos tests need sit directly in the frame path.
//   - The decoder is about a hundred lines and is fuzzed (FuzzDecodeFrame);
//     there is no code generation and no large dependency tree (grpc-go is
//     not otherwise a dependency of the module).
//
// The cost is that we own reconnects, multiplexing and versioning; the
// handshake carries a protocol version so the format can evolve.
//
// # Connections
//
// A node dials each peer it sends to once and multiplexes every call and
// message to that peer over that connection (request ids match responses);
// the peer answers on the same connection. So two nodes that talk both ways
// hold two connections, one per direction of calls, which keeps each side the
// single owner of its dialing and reconnect logic. The dialer sends Hello
// (version, its node id); the listener answers HelloAck with its own id, so
// a reused address that now belongs to another node is detected.
//
// # Authentication
//
// With Config.TLS every connection runs over mutual TLS 1.3: each side
// presents a certificate issued by the cluster CA and verifies the other's
// (node/pki). The id a dialer claims in Hello must be its certificate's
// Subject CommonName, and the certificate of the node a dialer reaches must
// name the node it meant to dial (ErrWrongPeer otherwise), so Request.From
// and Message.From are proven ids. Config.Authorize then judges every
// inbound request and message (the node refuses peers that left the roster
// or were removed, whose certificates are still valid). No method skips
// either check; the epoch exemptions only skip the epoch comparison. Without
// TLS (insecure mode) ids are claims anyone reaching the port can make.
//
// # Idle connections and memory
//
// A listener closes a connection on which nothing arrived for
// Config.IdleTimeout (at least 3/4 of it); dialers ping every IdleTimeout/3
// while connected. A
// frame's buffer grows as its bytes arrive (from 64 KiB, doubling up to the
// announced length, itself bounded by MaxFrameSize), so a length prefix
// alone costs nothing.
//
// # Epochs
//
// Every request and message carries the sender's roster epoch
// (Config.Epoch). The receiver answers a request whose epoch differs from
// its own (in either direction) with an EpochMismatchError carrying both:
// the side that is behind converges through gossip and the caller re-routes
// with its new ring. Epoch 0 (a sender without an epoch) and methods
// exempted by Config.SkipEpochCheck are not checked; messages are never
// checked but carry the epoch for the handler to judge.
//
// When a connection fails, pending calls fail with ErrConnectionLost, the
// peer enters backoff (exponential, jittered) and calls fail fast with
// ErrUnavailable until a redial succeeds. All errors that a caller may retry
// on another replica or later report true from IsRetryable.
//
// One-way messages have no caller to fail: those queued when a dial fails
// or a connection breaks (a new peer not listening yet, a restart) are kept,
// at most SendQueueLen, and written first on the next connection, in order;
// if none succeeds within Config.MessageHold they are dropped. Every
// message Send accepted and never wrote is counted
// (imnode_transport_messages_dropped_total, by reason). Requests queued at
// that moment are dropped, never sent later: their callers were already
// failed and may have retried elsewhere.
//
// Config.Authorize refusals are counted by kind and reason
// (imnode_transport_peer_refusals_total; an error implementing
// RefusalReason names its reason) and logged once per peer per 30 s.
//
// # Goroutines
//
// Transport owns every goroutine it starts: the accept loop, per peer one
// dial/write loop and one reader, per inbound connection one reader and one
// writer, and the workers that handle its requests (started on demand, at
// most Config.MaxInflight per connection, each serving one request after
// another until the connection closes or it idled for 10 s). Shutdown
// cancels, closes all connections and waits for all of them. CallFunc
// starts none: its callback runs on the goroutine that learns the outcome
// (the reader, the peer's goroutine, or the deadline's time.AfterFunc,
// which only completes the call).
package transport
