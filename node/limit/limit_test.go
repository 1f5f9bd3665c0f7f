package limit

import (
	"fmt"
	"testing"
	"time"
)

func TestLimitRateBurstRefillAndKeys(t *testing.T) {
	now := time.Unix(0, 0)
	r := NewRate(2, 3, 4, func() time.Time { return now })
	for i := range 3 {
		if !r.Allow("a") {
			t.Fatalf("take %d of a burst of 3 refused", i+1)
		}
	}
	if r.Allow("a") || !r.Exhausted("a") {
		t.Fatal("a fourth take within the burst was allowed")
	}
	if !r.Allow("b") {
		t.Fatal("another key shares a's bucket")
	}
	now = now.Add(500 * time.Millisecond) // 2/s: one token back
	if !r.Allow("a") || r.Allow("a") {
		t.Fatal("refill after 0.5 s at 2/s is not exactly one token")
	}
	if ok, wait := r.Take("a"); ok || wait != 500*time.Millisecond {
		t.Fatalf("Take on an empty bucket at 2/s: ok %v, wait %v; want refused, 500ms", ok, wait)
	}
	for i := range 100 {
		r.Allow(fmt.Sprint("k", i))
	}
	if n := r.Len(); n > 4 {
		t.Fatalf("%d keys remembered, limit 4", n)
	}
	if NewRate(0, 1, 0, nil).Allow("x") != true {
		t.Fatal("a zero rate must disable the limit")
	}
}

func TestLimitCounter(t *testing.T) {
	c := NewCounter()
	first, second, third := c.Acquire("a", 2), c.Acquire("a", 2), c.Acquire("a", 2)
	if !first || !second || third {
		t.Fatal("limit 2 not enforced")
	}
	c.Release("a")
	if !c.Acquire("a", 2) {
		t.Fatal("release did not free a slot")
	}
	c.Release("a")
	c.Release("a")
	if c.Get("a") != 0 || len(c.n) != 0 {
		t.Fatalf("released key still held: %v", c.n)
	}
	if !c.Acquire("b", 0) {
		t.Fatal("max 0 must mean no limit")
	}
}

func TestLimitBucketTakeAndWait(t *testing.T) {
	now := time.Unix(0, 0)
	var b Bucket // zero value: full
	for i := range 2 {
		if ok, _ := b.Take(now, 4, 2); !ok {
			t.Fatalf("take %d of a burst of 2 refused", i+1)
		}
	}
	ok, wait := b.Take(now, 4, 2)
	if ok || wait != 250*time.Millisecond {
		t.Fatalf("third take: ok %v, wait %v; want refused, 250ms (4/s)", ok, wait)
	}
	now = now.Add(100 * time.Millisecond)
	if ok, wait := b.Take(now, 4, 2); ok || wait != 150*time.Millisecond {
		t.Fatalf("take 100ms later: ok %v, wait %v; want refused, 150ms", ok, wait)
	}
	now = now.Add(150 * time.Millisecond)
	if ok, _ := b.Take(now, 4, 2); !ok {
		t.Fatal("take after the announced wait refused")
	}
	if ok, _ := b.Take(now, -1, 2); !ok {
		t.Fatal("a negative rate must disable the limit")
	}
}

func TestLimitInterval(t *testing.T) {
	now := time.Unix(100, 0)
	var iv Interval
	if !iv.Allow(now, time.Minute) {
		t.Fatal("the first event was held back")
	}
	if iv.Allow(now.Add(59*time.Second), time.Minute) {
		t.Fatal("an event within the period passed")
	}
	if !iv.Allow(now.Add(time.Minute), time.Minute) {
		t.Fatal("an event a period later was held back")
	}
	if iv.Allow(now.Add(time.Minute+time.Second), time.Minute) {
		t.Fatal("the period did not restart at the last event let through")
	}
}
