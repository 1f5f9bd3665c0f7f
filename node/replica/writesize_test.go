package replica

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/imcluster/imcluster/node/store"
)

// TestWriteSizeIsPayloadLength: the size a write is checked against the
// frame limit with, counted without encoding it, is the length of its
// encoded Prepare payload, for writes with no op, small and large keys and
// values (varint lengths of one to three bytes), and with or without an
// fsync.
func TestWriteSizeIsPayloadLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 127, 128, 300, 16383, 16384, 70000}
	for i := range 200 {
		w := store.PendingWrite{Epoch: rng.Uint64N(1 << (i % 64)), ID: rng.Uint64(), NoSync: i%2 == 1}
		for range rng.IntN(5) {
			w.Ops = append(w.Ops, store.Op{Kind: store.OpKind(1 + rng.IntN(3)),
				Key:   bytes.Repeat([]byte{'k'}, sizes[rng.IntN(len(sizes))]),
				Value: bytes.Repeat([]byte{'v'}, sizes[rng.IntN(len(sizes))])})
		}
		shard := uint16(rng.IntN(1 << 16))
		if got, want := writeSize(shard, w), len(writePayload(shard, w)); got != want {
			t.Fatalf("write %d (shard %d, %d ops, noSync %v): writeSize %d, payload %d bytes", i, shard, len(w.Ops), w.NoSync, got, want)
		}
	}
}
