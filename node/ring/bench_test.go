package ring

import (
	"fmt"
	"testing"
)

func BenchmarkRingNew(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		b.Run(fmt.Sprintf("S=256/R=3/N=%d", n), func(b *testing.B) {
			ms := members(n, StateActive)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(DefaultConfig(), 1, ms); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRingCoordinator(b *testing.B) {
	rg := mustNew(b, DefaultConfig(), 1, members(10, StateActive))
	live := func(id string) bool { return id != "imnode-3" }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rg.Coordinator(i%DefaultShards, live)
		i++
	}
}

func BenchmarkRingConversationShard(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ConversationShard(DefaultShards, "imcluster-dev", "5f1a2b3c4d5e6f7a8b9c0d1e")
	}
}
