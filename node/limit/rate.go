package limit

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Rate or Counter remembers when its
// constructor is given zero. Each key costs about 100 bytes, so the default
// costs at most ~6.5 MB however many distinct keys a client invents.
const DefaultMaxKeys = 65536

// Rate is a set of token buckets, one per key: each holds up to burst
// tokens and refills at perSecond. It remembers at most maxKeys keys; when
// full it forgets the buckets that are full again (idle keys), and if none
// is, an arbitrary one (a forgotten key starts again with a full bucket, so
// eviction only ever errs towards allowing). Rate is safe for concurrent
// use; one mutex guards the map.
type Rate struct {
	perSecond float64
	burst     float64
	maxKeys   int
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewRate returns a Rate. A perSecond of zero or less disables the limit
// (Allow always reports true). burst below 1 means 1; maxKeys zero means
// DefaultMaxKeys; now nil means time.Now.
func NewRate(perSecond float64, burst, maxKeys int, now func() time.Time) *Rate {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	if now == nil {
		now = time.Now
	}
	return &Rate{perSecond: perSecond, burst: float64(max(burst, 1)), maxKeys: maxKeys, now: now, buckets: make(map[string]*bucket)}
}

// Allow takes one token of key's bucket and reports whether there was one.
func (r *Rate) Allow(key string) bool {
	if r == nil || r.perSecond <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.refillLocked(key)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Exhausted reports whether key's bucket is empty, without taking a token.
func (r *Rate) Exhausted(key string) bool {
	if r == nil || r.perSecond <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.buckets[key]; !ok {
		return false
	}
	return r.refillLocked(key).tokens < 1
}

// refillLocked returns key's bucket, created full or refilled to now.
// r.mu must be held.
func (r *Rate) refillLocked(key string) *bucket {
	now := r.now()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= r.maxKeys {
			r.evictLocked(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[key] = b
		return b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(r.burst, b.tokens+dt*r.perSecond)
		b.last = now
	}
	return b
}

// evictLocked forgets every bucket that has refilled completely, or one
// arbitrary bucket when none has. r.mu must be held.
func (r *Rate) evictLocked(now time.Time) {
	full := time.Duration(r.burst / r.perSecond * float64(time.Second))
	for k, b := range r.buckets {
		if now.Sub(b.last) >= full {
			delete(r.buckets, k)
		}
	}
	if len(r.buckets) < r.maxKeys {
		return
	}
	for k := range r.buckets {
		delete(r.buckets, k)
		return
	}
}

// Len returns the number of keys remembered.
func (r *Rate) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}
