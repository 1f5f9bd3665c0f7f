package transport

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Faults injects network faults into a Transport for tests (the chaos
// harness): dropped frames, delayed frames and partitions. Set it in
// Config.Faults; change it at any time. It is safe for concurrent use.
//
// Faults act at the frame level of this node only: a partition from peer X
// refuses dials to X and handshakes from X, and drops every frame to or from
// X on connections that already exist (calls then time out, as they would
// across a real partition). Partitioning on one side of a pair is enough
// to cut both directions.
type Faults struct {
	mu          sync.Mutex
	rng         *rand.Rand
	partitioned map[string]bool
	dropRate    float64
	delay       time.Duration
}

// NewFaults returns a Faults with no fault active; seed makes drops
// reproducible.
func NewFaults(seed uint64) *Faults {
	//nolint:gosec // reproducible fault injection, not cryptography
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed)), partitioned: map[string]bool{}}
}

// Partition cuts this node off from the given peers.
func (f *Faults) Partition(peers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range peers {
		f.partitioned[p] = true
	}
}

// Heal removes every partition and resets drop rate and delay.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.partitioned)
	f.dropRate, f.delay = 0, 0
}

// SetDropRate drops each outgoing frame with probability p (0..1).
func (f *Faults) SetDropRate(p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropRate = p
}

// SetDelay delays each outgoing frame (and so everything behind it on the
// same connection) by d.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// isPartitioned reports whether peer is cut off. A nil Faults has none.
func (f *Faults) isPartitioned(peer string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.partitioned[peer]
}

// outbound decides the fate of one frame to peer: drop it, or delay it.
func (f *Faults) outbound(peer string) (drop bool, delay time.Duration) {
	if f == nil {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.partitioned[peer] {
		return true, 0
	}
	if f.dropRate > 0 && f.rng.Float64() < f.dropRate {
		return true, 0
	}
	return false, f.delay
}
