// Package client is a Go client for LeanCloud's realtime messaging protocol as
// served by imnode (and by LeanCloud itself). It mirrors the JavaScript SDK
// (leancloud-realtime) in Go idiom: Dial opens one WebSocket (the SDK's
// Realtime), Conn.Login opens a session on it (the SDK's IMClient), and
// IMClient and Conversation carry the chat operations.
//
// What it owns: the socket, request/response correlation by GenericCommand.i,
// the echo heartbeat and liveness timer, automatic reconnection with the JS
// SDK's backoff and re-login with the session token, routing of pushes to the
// sessions on the socket by peerId, and the per-session event queue.
//
// What it must not do: import anything of the node except the wire codec in
// node/protocol, or keep global state. Every goroutine it starts belongs to a
// Conn and ends in Conn.Close.
package client
