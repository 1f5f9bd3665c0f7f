package membership

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestMembershipCoalescer(t *testing.T) {
	tests := []struct {
		name string
		// gaps between signals
		gaps []time.Duration
		want []time.Duration // flush times since start
	}{
		{"single event", []time.Duration{0}, []time.Duration{20 * time.Millisecond}},
		{"burst within quiet", []time.Duration{0, 5 * time.Millisecond, 5 * time.Millisecond}, []time.Duration{30 * time.Millisecond}},
		{"two bursts", []time.Duration{0, 50 * time.Millisecond}, []time.Duration{20 * time.Millisecond, 70 * time.Millisecond}},
		// Signals every 7ms from 0 to 203ms (no tie with a timer): max
		// forces a flush at 100ms and at 105+100ms.
		{"long burst capped by max", repeat(7*time.Millisecond, 30), []time.Duration{100 * time.Millisecond, 205 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := make(chan struct{}, 1)
				var mu sync.Mutex
				var got []time.Duration
				start := time.Now()
				c := coalescer{
					in: in, quiet: 20 * time.Millisecond, max: 100 * time.Millisecond,
					flush: func() {
						mu.Lock()
						defer mu.Unlock()
						got = append(got, time.Since(start))
					},
					tickEvery: time.Hour, tick: func() {},
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					c.run(ctx)
				}()
				for _, g := range tt.gaps {
					time.Sleep(g) // fake clock inside the bubble
					in <- struct{}{}
					synctest.Wait()
				}
				time.Sleep(time.Second)
				cancel()
				<-done
				mu.Lock()
				defer mu.Unlock()
				if len(got) != len(tt.want) {
					t.Fatalf("flushes at %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Fatalf("flushes at %v, want %v", got, tt.want)
					}
				}
			})
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	out[0] = 0
	for i := 1; i < n; i++ {
		out[i] = d
	}
	return out
}
