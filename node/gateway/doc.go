// Package gateway owns client connections: the gws WebSocket handler, the
// per-connection read, work and write loops, the sessions logged in on each
// socket (several per socket, routed by peerId), login (session/open with
// tokens, signatures and single-device tags), session/close, query and
// refresh, echo, goaway, idle and login timeouts, and the delivery of pushes
// to sessions (the conversation.Deliverer).
//
// Everything else a session asks for is handed to the Engine seam, which is
// the conversation engine on a single node and the request router in a
// cluster.
//
// Ownership: each connection has three goroutines, all owned by the Gateway
// and stopped by Shutdown: gws's ReadLoop (decodes and enqueues, never
// blocks), a worker that executes commands in arrival order, and a writer
// that drains the bounded outbound queue. The session registry is guarded by
// one mutex (registry.mu); a connection's own state by conn.mu. Lock order:
// registry.mu before conn.mu (see node/LOCKING.md).
package gateway
