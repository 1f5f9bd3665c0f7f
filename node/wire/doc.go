// Package wire is the peer protocol's vocabulary shared by the cluster
// packages (cluster, replica, route, presence): the method numbers of the
// one peer transport they share, the hand-written payload codec (Enc, Dec)
// and the error codes that cross the wire (Error, Decode).
//
// It imports nothing of imcluster but the transport's error types, so every
// cluster package may import it and none needs another to talk to a peer.
package wire
