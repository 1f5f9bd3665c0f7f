package limit

import "sync"

// Counter counts what is in progress per key (open connections of an
// address, running queries of an app) and refuses to go above a limit.
// Keys at zero are forgotten, so it holds only keys with something in
// progress. Counter is safe for concurrent use; one mutex guards the map.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter { return &Counter{n: make(map[string]int)} }

// Acquire adds one to key and reports true, unless key is already at max
// (max zero or less means no limit). Each successful Acquire must be
// followed by exactly one Release.
func (c *Counter) Acquire(key string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.n[key] >= max {
		return false
	}
	c.n[key]++
	return true
}

// Release undoes one Acquire of key.
func (c *Counter) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}

// Get returns key's count.
func (c *Counter) Get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}
