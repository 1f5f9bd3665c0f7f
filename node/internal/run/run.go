// Package run owns the goroutines a component starts and waits for at its
// stop. Group, without the race between a late start and the final wait:
// Group.Go adds a goroutine only while the group is open and runs the
// function on the caller's goroutine otherwise (before Open, after Close),
// so no WaitGroup.Add can follow the Wait of Close. Pool, a bounded set of
// warm worker goroutines for short functions that arrive in bursts (pool.go).
package run

import "sync"

// Group runs goroutines that its owner waits for. The zero value is closed
// until Open.
type Group struct {
	// mu orders Go's Add against Close: once closed is set nothing is added.
	mu     sync.Mutex
	open   bool
	closed bool
	wg     sync.WaitGroup
}

// Open lets Go start goroutines (until Close).
func (g *Group) Open() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// Go runs f on a goroutine the group owns while it is open, and on the
// caller's goroutine before Open or once Close began.
func (g *Group) Go(f func()) {
	g.mu.Lock()
	if !g.open || g.closed {
		g.mu.Unlock()
		f()
		return
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// Close stops Go from starting goroutines; Wait then waits for those
// started.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Wait waits for the goroutines started by Go.
func (g *Group) Wait() { g.wg.Wait() }
