// Package limit holds the small in-memory limiters the node uses to bound
// what one client, address or app can cost it: keyed token buckets (rates)
// and keyed counters (concurrency). They are per node, not cluster-wide: a
// client spread over N nodes gets N times the rate, which is still bounded.
// Interval paces what a recurring cause costs the node's logs: one warning
// per period.
//
// The package knows nothing of apps, sockets or HTTP; it must not block or
// do I/O.
package limit
