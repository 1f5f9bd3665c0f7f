// Package protocol owns LeanCloud's realtime wire format: the generated
// GenericCommand schema (package pb), the two WebSocket subprotocols and their
// frame codecs, the client-visible error table, and small constructors for
// well-formed responses and pushes.
//
// It does no I/O and imports nothing else of imcluster. Decoding never panics
// on bytes from the network; FuzzDecode proves it.
package protocol
