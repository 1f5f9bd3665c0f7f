package limit

import (
	"sync/atomic"
	"time"
)

// Interval lets one event through per period, whoever asks: a warning
// logged at most once a minute however often its cause recurs. Its zero
// value lets the first event through. It is one atomic word, safe for
// concurrent use; when two callers race for the same slot, one wins.
type Interval struct {
	last atomic.Int64 // unix nanoseconds of the last event let through; 0: none
}

// Allow reports whether an event at now may pass: none passed yet, or the
// last one passed at least period before now. It then records now.
func (iv *Interval) Allow(now time.Time, period time.Duration) bool {
	n := now.UnixNano()
	last := iv.last.Load()
	if last != 0 && n-last < int64(period) {
		return false
	}
	return iv.last.CompareAndSwap(last, n)
}
