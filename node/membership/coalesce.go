package membership

import (
	"context"
	"time"
)

// coalescer turns a stream of change signals into fewer flushes: it flushes
// once no signal arrived for quiet, or max after the first unflushed signal,
// whichever comes first (serf's CoalescePeriod/QuiescentPeriod). It is run
// by one goroutine; tick runs every tickEvery while it waits (join retries).
type coalescer struct {
	in        <-chan struct{}
	quiet     time.Duration
	max       time.Duration
	flush     func()
	tickEvery time.Duration
	tick      func()
}

// run loops until ctx is done.
func (c *coalescer) run(ctx context.Context) {
	quiet := time.NewTimer(time.Hour)
	maxT := time.NewTimer(time.Hour)
	ticker := time.NewTicker(c.tickEvery)
	defer quiet.Stop()
	defer maxT.Stop()
	defer ticker.Stop()
	quiet.Stop()
	maxT.Stop()
	dirty := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.in:
			quiet.Reset(c.quiet)
			if !dirty {
				dirty = true
				maxT.Reset(c.max)
			}
			continue
		case <-ticker.C:
			c.tick()
			continue
		case <-quiet.C:
		case <-maxT.C:
		}
		if !dirty {
			continue // a timer that fired while being stopped
		}
		dirty = false
		quiet.Stop()
		maxT.Stop()
		c.flush()
	}
}
