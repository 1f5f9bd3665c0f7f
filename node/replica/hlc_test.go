package replica

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a wall clock tests move by hand; safe for concurrent use
// (hlc reads it outside its lock).
type fakeClock struct{ ms atomic.Int64 }

func (f *fakeClock) now() time.Time { return time.UnixMilli(f.ms.Load()) }

func newTestHLC(startMS int64) (*hlc, *fakeClock) {
	fc := &fakeClock{}
	fc.ms.Store(startMS)
	return &hlc{now: fc.now}, fc
}

func TestReplicaHLCLayout(t *testing.T) {
	c, fc := newTestHLC(1_700_000_000_000)
	if got, want := c.Now(), uint64(1_700_000_000_000)<<HLCLogicalBits; got != want {
		t.Fatalf("first version %d, want wall ms << %d = %d", got, HLCLogicalBits, want)
	}
	if got, want := c.Now(), uint64(1_700_000_000_000)<<HLCLogicalBits+1; got != want {
		t.Fatalf("second version in the same ms %d, want %d", got, want)
	}
	fc.ms.Add(1)
	if got, want := c.Now(), uint64(1_700_000_000_001)<<HLCLogicalBits; got != want {
		t.Fatalf("version in the next ms %d, want %d", got, want)
	}
}

// TestReplicaHLCReserve: Reserve(n) hands out n consecutive versions no
// other call of the clock gives.
func TestReplicaHLCReserve(t *testing.T) {
	c, _ := newTestHLC(1_700_000_000_000)
	a := c.Now()
	first := c.Reserve(5)
	if first != a+1 {
		t.Fatalf("Reserve after %d = %d, want %d", a, first, a+1)
	}
	if next := c.Now(); next != first+5 {
		t.Fatalf("Now after Reserve(5) from %d = %d, want %d", first, next, first+5)
	}
	if one := c.Reserve(0); one != first+6 || c.Now() != first+7 {
		t.Fatalf("Reserve(0) = %d, want one version %d", one, first+6)
	}
}

func TestReplicaHLCWallClockBackwards(t *testing.T) {
	c, fc := newTestHLC(10_000)
	prev := c.Now()
	steps := []int64{-5_000, 0, -1, +2, -10_000, +20_000, -1}
	for i, d := range steps {
		fc.ms.Add(d)
		v := c.Now()
		if v <= prev {
			t.Fatalf("step %d (wall %+d ms): version %d not above %d", i, d, v, prev)
		}
		prev = v
	}
	// Once the wall clock passes the last version, versions follow it again.
	if want := uint64(fc.ms.Load()) << HLCLogicalBits; prev < want {
		t.Fatalf("version %d behind the wall clock %d", prev, want)
	}
}

// More than 2^16 versions in one millisecond carry into the millisecond
// bits and stay strictly increasing.
func TestReplicaHLCLogicalOverflow(t *testing.T) {
	c, _ := newTestHLC(5)
	prev := c.Now()
	for range 1<<HLCLogicalBits + 10 {
		v := c.Now()
		if v != prev+1 {
			t.Fatalf("version %d after %d", v, prev)
		}
		prev = v
	}
}

func TestReplicaHLCObserve(t *testing.T) {
	c, fc := newTestHLC(1_000)
	v := c.Now()

	peer := uint64(50_000)<<HLCLogicalBits + 7
	c.Observe(peer)
	if got := c.Now(); got != peer+1 {
		t.Fatalf("Now after Observe(%d) = %d, want %d", peer, got, peer+1)
	}
	// An older observed version moves nothing back.
	c.Observe(v)
	c.Observe(0)
	if got := c.Now(); got != peer+2 {
		t.Fatalf("Now after observing older versions = %d, want %d", got, peer+2)
	}
	// The wall clock catching up takes over again.
	fc.ms.Store(60_000)
	if got, want := c.Now(), uint64(60_000)<<HLCLogicalBits; got != want {
		t.Fatalf("Now after the wall clock passed = %d, want %d", got, want)
	}
}

// Concurrent Now calls (with Observe racing them) never hand out the same
// version twice, and each caller sees its versions strictly increase.
func TestReplicaHLCConcurrent(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    *hlc
	}{
		{"real clock", &hlc{now: time.Now}},
		{"stuck clock", func() *hlc { c, _ := newTestHLC(1); return c }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const workers, perWorker = 8, 2000
			got := make([][]uint64, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					vs := make([]uint64, 0, perWorker)
					for i := range perWorker {
						if w == 0 && i%100 == 0 {
							tt.c.Observe(tt.c.Now() + 3)
						}
						vs = append(vs, tt.c.Now())
					}
					got[w] = vs
				})
			}
			wg.Wait()
			seen := make(map[uint64]bool, workers*perWorker)
			for w, vs := range got {
				for i, v := range vs {
					if i > 0 && v <= vs[i-1] {
						t.Fatalf("worker %d: version %d after %d", w, v, vs[i-1])
					}
					if seen[v] {
						t.Fatalf("version %d handed out twice", v)
					}
					seen[v] = true
				}
			}
		})
	}
}

// TestReplicaHLCKeep: a writer's version is kept and the clock moves past
// it; one beyond the drift bound is replaced by a new version.
func TestReplicaHLCKeep(t *testing.T) {
	c, _ := newTestHLC(1_000)
	ahead := uint64(1_000+maxDrift.Milliseconds()/2) << HLCLogicalBits
	if got := c.Keep(ahead); got != ahead {
		t.Fatalf("Keep(%d) = %d", ahead, got)
	}
	if next := c.Now(); next != ahead+1 {
		t.Fatalf("Now after Keep(%d) = %d, want %d", ahead, next, ahead+1)
	}
	far := uint64(1_000+2*maxDrift.Milliseconds()) << HLCLogicalBits
	if got := c.Keep(far); got != ahead+2 {
		t.Fatalf("Keep(%d), beyond the drift bound, = %d, want the new version %d", far, got, ahead+2)
	}
}

func TestReplicaHLCIgnoresVersionsFarAhead(t *testing.T) {
	c, _ := newTestHLC(1_000)
	c.Observe(math.MaxUint64 - 1)
	a, b := c.Now(), c.Now()
	if b <= a {
		t.Fatalf("versions went backwards after a hostile observation: %d then %d", a, b)
	}
	if a>>HLCLogicalBits > 1_000+uint64(maxDrift.Milliseconds()) {
		t.Fatalf("clock moved to %d ms by a version beyond the drift bound", a>>HLCLogicalBits)
	}
}
