package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a fixed-size, lock-free, HDR-style latency histogram: values
// below 256 ns are exact, larger ones fall into log-linear buckets of 128
// sub-buckets per power of two, so any recorded value is reported within
// 1/128 (0.8 %) of its true value. Its memory is constant (7424 counters,
// about 58 KiB) however many samples are recorded, which keeps imbench's
// footprint bounded for any rate and duration. Safe for concurrent use.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Int64 // nanoseconds, for the mean
	max    atomic.Int64
}

const (
	histSubBits = 8                      // 256 sub-buckets in the linear range
	histHalf    = 1 << (histSubBits - 1) // 128 per power of two above it
	// histBuckets covers every non-negative int64: exponent up to
	// 63-histSubBits+1 = 56.
	histBuckets = (64-histSubBits)*histHalf + 2*histHalf
)

func histIndex(v int64) int {
	u := uint64(max(v, 0))
	if u < 2*histHalf {
		return int(u)
	}
	exp := bits.Len64(u) - histSubBits
	sub := int(u >> uint(exp)) // in [histHalf, 2*histHalf)
	return exp*histHalf + sub
}

// histValue returns the midpoint of bucket idx.
func histValue(idx int) int64 {
	if idx < 2*histHalf {
		return int64(idx)
	}
	exp := idx/histHalf - 1
	sub := int64(idx%histHalf + histHalf)
	lo := sub << uint(exp)
	hi := (sub+1)<<uint(exp) - 1
	return lo + (hi-lo)/2
}

// Record adds one sample.
func (h *histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histIndex(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns the number of samples.
func (h *histogram) Count() uint64 { return h.total.Load() }

// Quantile returns the value at quantile q in [0, 1] (0 if empty).
func (h *histogram) Quantile(q float64) time.Duration {
	total := h.total.Load()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := histValue(i)
			if m := h.max.Load(); v > m {
				v = m
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max.Load())
}

// Mean returns the average sample.
func (h *histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Max returns the largest sample.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }
