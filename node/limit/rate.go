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
	buckets map[string]*Bucket
}

// Bucket is one token bucket; its rate and size are given at each Take, so
// it is two words and its zero value is a full bucket. It is not safe for
// concurrent use: its owner serialises its calls (a Rate holds one per key
// under its mutex; a client session's commands run one at a time).
type Bucket struct {
	tokens float64
	last   time.Time
}

// Take refills b to now at perSecond, up to burst (below 1 means 1), and
// takes one token if there is one. When there is none it reports false and
// how long until there will be one. A perSecond of zero or less disables
// the limit (Take always reports true).
func (b *Bucket) Take(now time.Time, perSecond float64, burst int) (ok bool, wait time.Duration) {
	if perSecond <= 0 {
		return true, 0
	}
	b.refill(now, perSecond, float64(max(burst, 1)))
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// refill adds the tokens earned since b.last; a zero Bucket starts full.
func (b *Bucket) refill(now time.Time, perSecond, burst float64) {
	if b.last.IsZero() {
		b.tokens, b.last = burst, now
		return
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst, b.tokens+dt*perSecond)
		b.last = now
	}
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
	return &Rate{perSecond: perSecond, burst: float64(max(burst, 1)), maxKeys: maxKeys, now: now, buckets: make(map[string]*Bucket)}
}

// Allow takes one token of key's bucket and reports whether there was one.
func (r *Rate) Allow(key string) bool {
	ok, _ := r.Take(key)
	return ok
}

// Take is Allow that also reports, when key's bucket is empty, how long
// until it holds a token again.
func (r *Rate) Take(key string) (ok bool, wait time.Duration) {
	if r == nil || r.perSecond <= 0 {
		return true, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bucketLocked(key).Take(r.now(), r.perSecond, int(r.burst))
}

// Exhausted reports whether key's bucket is empty, without taking a token.
func (r *Rate) Exhausted(key string) bool {
	if r == nil || r.perSecond <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		return false
	}
	b.refill(r.now(), r.perSecond, r.burst)
	return b.tokens < 1
}

// bucketLocked returns key's bucket, a new (full) one if key has none.
// r.mu must be held.
func (r *Rate) bucketLocked(key string) *Bucket {
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= r.maxKeys {
			r.evictLocked(r.now())
		}
		b = &Bucket{}
		r.buckets[key] = b
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
