package main

import (
	"math"
	"testing"
	"time"
)

func TestBenchHistogramIndexMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		idx := histIndex(v)
		if idx < prev || idx >= histBuckets {
			t.Fatalf("histIndex(%d) = %d (prev %d, buckets %d)", v, idx, prev, histBuckets)
		}
		prev = idx
		got := histValue(idx)
		if v > 0 && math.Abs(float64(got-v))/float64(v) > 1.0/128 {
			t.Fatalf("histValue(histIndex(%d)) = %d: error above 1/128", v, got)
		}
	}
}

func TestBenchHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if math.Abs(float64(got-tt.want))/float64(tt.want) > 0.01 {
			t.Errorf("Quantile(%v) = %v, want %v within 1%%", tt.q, got, tt.want)
		}
	}
	if h.Count() != 10000 || h.Max() != 10*time.Millisecond {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Fatalf("mean %v", m)
	}
	var empty histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Fatal("empty histogram not zero")
	}
}
