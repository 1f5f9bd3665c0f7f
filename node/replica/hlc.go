package replica

import (
	"sync"
	"time"
)

// hlc is a hybrid logical clock: versions are wall-clock milliseconds
// shifted left 16 bits plus a logical counter, strictly increasing on this
// node and never below a version observed from a peer, so a write made
// after seeing another wins over it last-writer-wins.
type hlc struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

const HLCLogicalBits = 16

// Now returns a new version.
func (c *hlc) Now() uint64 {
	wall := uint64(c.now().UnixMilli()) << HLCLogicalBits
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last {
		c.last = wall
	} else {
		c.last++
	}
	return c.last
}

// Reserve returns the first of n (at least 1) consecutive new versions,
// all above every version this clock gave or observed so far.
func (c *hlc) Reserve(n int) uint64 {
	wall := uint64(c.now().UnixMilli()) << HLCLogicalBits
	c.mu.Lock()
	defer c.mu.Unlock()
	first := max(wall, c.last+1)
	c.last = first + uint64(max(n, 1)) - 1
	return first
}

// maxDrift bounds how far ahead of this node's wall clock an observed
// version may move the clock: a corrupt or hostile version near 2^64 must
// not make versions wrap around.
const maxDrift = time.Hour

// Observe moves the clock past a version seen from a peer, unless it is
// more than maxDrift ahead of the wall clock.
func (c *hlc) Observe(v uint64) {
	limit := uint64(c.now().Add(maxDrift).UnixMilli()) << HLCLogicalBits
	c.mu.Lock()
	if v > c.last && v <= limit {
		c.last = v
	}
	c.mu.Unlock()
}

// Keep returns v, a version given by a writer (store.Op.Version), and
// moves the clock past it; a version more than maxDrift ahead of the wall
// clock (corrupt, or from a node whose clock is far off) is replaced by a
// new one, so it can neither pin a key above every later write nor be
// handed out again.
func (c *hlc) Keep(v uint64) uint64 {
	limit := uint64(c.now().Add(maxDrift).UnixMilli()) << HLCLogicalBits
	if v > limit {
		return c.Now()
	}
	c.Observe(v)
	return v
}
