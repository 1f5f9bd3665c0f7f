// Package node assembles one imcluster chat node: it owns every component
// (store, conversation engine, gateway, HTTP servers) and their lifecycle:
// New(cfg) builds, Start listens and serves, Shutdown drains clients, stops
// goroutines and closes the store, in that order.
//
// It contains wiring, not logic: protocol behaviour lives in gateway and
// conversation, storage in store, HTTP endpoints in httpapi.
package node
