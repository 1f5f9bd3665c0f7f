// Package gateway owns client connections: the gws WebSocket handler, the
// per-connection reader, worker and writer, the sessions logged in on each
// socket (several per socket, routed by peerId), login (session/open with
// tokens, signatures and single-device tags), session/close, query and
// refresh, echo, goaway, idle and login timeouts, and the delivery of pushes
// to sessions (the conversation.Deliverer).
//
// Everything else a session asks for is handed to the Engine seam, which is
// the conversation engine on a single node and the request router in a
// cluster.
//
// Ownership: every goroutine is owned by the Gateway and stopped by
// Shutdown. Each connection has gws's ReadLoop (decodes and enqueues, never
// blocks) for its whole life, and two roles that run only while they
// have work, so an idle socket costs one goroutine: a worker that executes
// the queued commands in arrival order and writes its own responses after
// each command, and a writer that writes every frame other goroutines
// queued in one write system call (queue.go). Both run on the gateway's
// pool of warm goroutines (Config.Workers, run.Pool): a burst of a socket's
// work reuses a goroutine whose stack earlier bursts grew through the engine
// instead of starting one and growing its stack again; with every warm
// goroutine busy it gets a goroutine of its own, so no socket waits for
// another; idle warm goroutines exit after Config.WorkerIdle. A push to a socket with
// nothing queued and no writer is written at once by the delivering
// goroutine with one non-blocking write (conn.writeNow), and only what the
// socket does not take goes to the writer; a socket whose outbound
// queue overflowed gets one more, which closes it (conn.slow), so that no
// delivering goroutine waits for a socket. One sweeper goroutine
// closes the sockets past their idle or login timeout. The session registry
// is guarded by one mutex (registry.mu); a connection's own state by
// conn.mu. Lock order: registry.mu before conn.mu (see node/LOCKING.md).
package gateway
