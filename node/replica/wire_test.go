package replica

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

func testOps(shard uint16) []store.Op {
	k := func(s string) []byte { return store.NewKey(shard, "app", store.FamMsg).Str("c").Str(s).Bytes() }
	return []store.Op{
		{Kind: store.OpSet, Key: k("a"), Value: store.EncodeVersioned(1<<20, false, []byte("hello"))},
		{Kind: store.OpSet, Key: k("b"), Value: store.EncodeVersioned(2<<20, true, nil)},
		{Kind: store.OpDelete, Key: k("c")},
		{Kind: store.OpDeleteRange, Key: k("d"), Value: k("e")},
		{Kind: store.OpSet, Key: store.ShardPrefix(shard), Value: []byte{}},
	}
}

func opsEqual(a, b []store.Op) bool {
	return slices.EqualFunc(a, b, func(x, y store.Op) bool {
		return x.Kind == y.Kind && bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value)
	})
}

func TestReplicaWireOps(t *testing.T) {
	for _, shard := range []uint16{0, 7, math.MaxUint16} {
		var e wire.Enc
		encodeOps(&e, testOps(shard))
		got, err := decodeOps(&wire.Dec{B: e.B}, shard)
		if err != nil {
			t.Fatalf("shard %d: %v", shard, err)
		}
		if !opsEqual(got, testOps(shard)) {
			t.Fatalf("shard %d: round trip = %v", shard, got)
		}
		for n := range len(e.B) {
			if _, err := decodeOps(&wire.Dec{B: e.B[:n]}, shard); err == nil {
				t.Fatalf("shard %d: prefix %d/%d decoded", shard, n, len(e.B))
			}
		}
	}
	var e wire.Enc
	encodeOps(&e, nil)
	if ops, err := decodeOps(&wire.Dec{B: e.B}, 3); err != nil || len(ops) != 0 {
		t.Fatalf("no ops: %v, %v", ops, err)
	}
}

func TestReplicaWireOpsRejected(t *testing.T) {
	key := store.NewKey(7, "app", store.FamConv).Str("c").Bytes()
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"other shard", []store.Op{{Kind: store.OpSet, Key: store.NewKey(8, "app", store.FamConv).Bytes()}}},
		{"short key", []store.Op{{Kind: store.OpSet, Key: []byte{7}}}},
		{"empty key", []store.Op{{Kind: store.OpDelete}}},
		{"kind zero", []store.Op{{Kind: 0, Key: key}}},
		{"unknown kind", []store.Op{{Kind: store.OpMergeFields + 1, Key: key}}},
		{"bad op after good ones", append(testOps(7), store.Op{Kind: 99, Key: key})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e wire.Enc
			encodeOps(&e, tt.ops)
			if ops, err := decodeOps(&wire.Dec{B: e.B}, 7); err == nil {
				t.Fatalf("decoded %v", ops)
			}
		})
	}
}

func FuzzDecodeOps(f *testing.F) {
	var e wire.Enc
	encodeOps(&e, testOps(7))
	f.Add(uint16(7), e.B)
	f.Add(uint16(7), e.B[:len(e.B)/2])
	f.Add(uint16(0), []byte{})
	f.Add(uint16(0), []byte{0})
	f.Add(uint16(math.MaxUint16), bytes.Repeat([]byte{0xff}, 12))
	f.Fuzz(func(t *testing.T, shard uint16, b []byte) {
		if ops, err := decodeOps(&wire.Dec{B: b}, shard); err == nil {
			var e wire.Enc
			encodeOps(&e, ops)
			again, err := decodeOps(&wire.Dec{B: e.B}, shard)
			if err != nil || !opsEqual(again, ops) {
				t.Fatalf("re-encoded ops %v: %v, %v", ops, again, err)
			}
		}
	})
}

func oldVersion(i int) uint64 {
	return uint64(time.Now().Add(-time.Hour).UnixMilli())<<HLCLogicalBits + uint64(i)
}

func aeKey(shard uint16, i int) []byte {
	return store.NewKey(shard, "app", store.FamMsg).Str("conv").Int64(int64(i)).Bytes()
}

func aeRecords(shard uint16, n int) []store.Op {
	ops := make([]store.Op, 0, n)
	for i := range n {
		ops = append(ops, store.Op{Kind: store.OpSet, Key: aeKey(shard, i),
			Value: store.EncodeVersioned(oldVersion(i), false, fmt.Appendf(nil, "message %d", i))})
	}
	return ops
}

func syncPagePayload(ops []store.Op, more bool, cursor []byte) []byte {
	var e wire.Enc
	e.U64(uint64(len(ops)))
	for _, op := range ops {
		e.Bytes(op.Key)
		e.Bytes(op.Value)
	}
	e.Bool(more)
	e.Bytes(cursor)
	return e.B
}

func TestReplicaWireRangeDigest(t *testing.T) {
	var rd store.RangeDigest
	for i := range 100 {
		rd.Add(aeKey(3, i), []byte{store.VersionValue, 0, 0, 0, 0, 0, 0, 0, byte(i)})
	}
	rd.Buckets[5] = store.BucketDigest{Sum: ^uint64(0), Keys: 1 << 40, Bytes: 1 << 50}
	equal, got, err := decodeRangeDigest(encodeRangeDigest(false, &rd))
	if err != nil || equal || got != rd {
		t.Fatalf("range digest round trip: %v, %v", equal, err)
	}
	if equal, got, err := decodeRangeDigest(encodeRangeDigest(true, &rd)); err != nil || !equal || got != (store.RangeDigest{}) {
		t.Fatalf("equal answer: %v, %v", equal, err)
	}
	full := encodeRangeDigest(false, &rd)
	for _, b := range [][]byte{nil, full[:len(full)-1], full[:3], {0, 63}} {
		if _, _, err := decodeRangeDigest(b); err == nil {
			t.Fatalf("decoding %x: no error", b)
		}
	}

	ops := aeRecords(3, 3)
	page, more, cursor, err := decodeSyncPage(syncPagePayload(ops, true, aeKey(3, 10)), 3)
	if err != nil || !more || !opsEqual(page, ops) || string(cursor) != string(aeKey(3, 10)) {
		t.Fatalf("sync page round trip: %v %v %x %v", page, more, cursor, err)
	}
	// An older source sends no cursor: continue after the last record.
	old := syncPagePayload(ops, true, nil)
	if _, _, cursor, err := decodeSyncPage(old[:len(old)-1], 3); err != nil || string(cursor) != string(ops[2].Key) {
		t.Fatalf("sync page without a cursor: %x, %v", cursor, err)
	}
	for name, b := range map[string][]byte{
		"record of another shard": syncPagePayload(aeRecords(4, 1), false, nil),
		"cursor in another shard": syncPagePayload(nil, true, aeKey(4, 1)),
		"truncated":               syncPagePayload(ops, false, nil)[:10],
	} {
		if _, _, _, err := decodeSyncPage(b, 3); err == nil {
			t.Fatalf("%s: no error", name)
		}
	}
}

func FuzzDecodeRangeDigest(f *testing.F) {
	var rd store.RangeDigest
	rd.Add(aeKey(1, 1), []byte("value"))
	full := encodeRangeDigest(false, &rd)
	f.Add(full)
	f.Add(full[:len(full)/2])
	f.Add(encodeRangeDigest(true, &rd))
	f.Add(syncPagePayload(aeRecords(1, 2), true, aeKey(1, 5)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if equal, rd, err := decodeRangeDigest(b); err == nil {
			equal2, rd2, err := decodeRangeDigest(encodeRangeDigest(equal, &rd))
			if err != nil || equal2 != equal || rd2 != rd {
				t.Fatalf("re-encoded range digest does not round-trip: %v", err)
			}
		}
		if ops, more, cursor, err := decodeSyncPage(b, 1); err == nil {
			ops2, more2, cursor2, err := decodeSyncPage(syncPagePayload(ops, more, cursor), 1)
			if err != nil || !opsEqual(ops2, ops) || more2 != more || string(cursor2) != string(cursor) {
				t.Fatalf("re-encoded sync page does not round-trip: %v", err)
			}
		}
	})
}

// TestReplicaWireWriteFlags: a write's NoSync and the commit notices it
// carries travel with wire.Prepare; a durable write's payload without
// notices is what earlier builds sent (no flags), and unknown flags are
// refused.
func TestReplicaWireWriteFlags(t *testing.T) {
	ops := testOps(7)[:2]
	carried := []notice{{shard: 7, epoch: 3, id: 5}, {shard: 300, epoch: 2, id: 1 << 40}}
	want := []store.PendingID{{Shard: 7, Epoch: 3, ID: 5}, {Shard: 300, Epoch: 2, ID: 1 << 40}}
	for _, noSync := range []bool{false, true} {
		for _, ns := range [][]notice{nil, carried} {
			w := store.PendingWrite{Epoch: 3, ID: 9, Ops: ops, NoSync: noSync}
			shard, got, commits, err := decodeWrite(&wire.Dec{B: withTail(writeBody(7, w), noSync, ns)})
			if err != nil || shard != 7 || got.NoSync != noSync || !opsEqual(got.Ops, ops) ||
				(ns == nil && commits != nil) || (ns != nil && !slices.Equal(commits, want)) {
				t.Fatalf("noSync %v, notices %v: round trip = %d %+v %v, %v", noSync, ns, shard, got, commits, err)
			}
		}
	}
	var old wire.Enc
	old.U64(7)
	old.U64(3)
	old.U64(9)
	encodeOps(&old, ops)
	if !bytes.Equal(old.B, writePayload(7, store.PendingWrite{Epoch: 3, ID: 9, Ops: ops})) {
		t.Fatal("a durable write's payload differs from earlier builds'")
	}
	// A forwarded write (wire.Write) carries its ops' versions; a write
	// without versions sends none, and a replicated write refuses them.
	versioned := slices.Clone(ops)
	versioned[1].Version = 1 << 40
	for _, in := range [][]store.Op{ops, versioned} {
		var e wire.Enc
		encodeOps(&e, in)
		encodeWriteTail(&e, false, nil, in)
		d := wire.Dec{B: e.B}
		got, err := decodeOps(&d, 7)
		if err == nil {
			_, _, err = decodeWriteTail(&d, got)
		}
		if err != nil || !opsEqual(got, in) || got[0].Version != 0 || got[1].Version != in[1].Version {
			t.Fatalf("write with versions %v: round trip = %+v, %v", in[1].Version != 0, got, err)
		}
		var plain wire.Enc
		encodeOps(&plain, in)
		if in[1].Version == 0 && !bytes.Equal(e.B, plain.B) {
			t.Fatal("a write without versions sends a tail")
		}
	}
	var vw wire.Enc
	vw.U64(7)
	vw.U64(3)
	vw.U64(9)
	encodeOps(&vw, versioned)
	encodeWriteTail(&vw, false, nil, versioned)
	if _, _, _, err := decodeWrite(&wire.Dec{B: vw.B}); err == nil {
		t.Fatal("a replicated write with versions accepted")
	}
	bad := append(slices.Clone(old.B), 2)
	if _, _, _, err := decodeWrite(&wire.Dec{B: bad}); err == nil {
		t.Fatal("unknown write flag accepted")
	}
}
