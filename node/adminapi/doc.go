// Package adminapi is the contract of a node's admin port (docs/architecture.md, docs/operator.md):
// the JSON documents served under /admin/v1, the health endpoints, and a small
// HTTP client for them.
//
// Both sides import it: the node serves these types and the operator, the CLI
// and tests consume them through Client. It owns only the wire shapes and the
// HTTP client; it must not import the node's internals or Kubernetes packages,
// so it stays cheap to import from anywhere.
//
// Compatibility: fields may be added; existing JSON names and meanings do not
// change within /admin/v1.
package adminapi
