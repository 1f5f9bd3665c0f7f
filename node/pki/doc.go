// Package pki issues and checks the certificates that prove membership of
// an imcluster cluster: a cluster CA (ECDSA P-256, self-signed) and node
// certificates signed by it whose Subject CommonName is the node id (for
// example "imnode-2"), usable for both ends of a peer connection
// (ExtKeyUsage ServerAuth and ClientAuth).
//
// It is pure Go (crypto/x509) and is used by `imnode certs` (clusters
// outside Kubernetes) and by the operator, which keeps the CA and the node
// certificates in Secrets. Files holds a node's peer credentials as files on
// disk and builds the TLS configurations of the peer transport from them,
// re-reading the files when they change (Kubernetes updates mounted Secrets
// in place).
//
// It owns no goroutine: whoever holds a Files calls Reload when it wants
// changes picked up.
package pki
