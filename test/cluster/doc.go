// Package cluster holds the multi-node tests of imcluster: real imnode
// processes started by test/harness on 127.0.0.1, driven through the Go
// client (client/) as an application would. They check what a user of a
// sharded cluster relies on: members of one conversation connected to
// different nodes see every message and membership event, queries and
// history answer the same on every node, and clients of a killed node
// reconnect elsewhere without losing an acknowledged message.
//
// The package has tests only; it must not grow helpers that other suites
// import (those belong in test/harness).
package cluster
