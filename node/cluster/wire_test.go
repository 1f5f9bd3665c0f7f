package cluster

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// wireFields is one value of every field type, encoded in this order.
type wireFields struct {
	u    uint64
	i    int64
	b    []byte
	s    string
	ok   bool
	strs []string
}

func (w wireFields) encode() []byte {
	var e enc
	e.u64(w.u)
	e.i64(w.i)
	e.bytes(w.b)
	e.str(w.s)
	e.bool(w.ok)
	e.strs(w.strs)
	return e.b
}

func decodeWireFields(b []byte) (wireFields, error) {
	d := dec{b: b}
	w := wireFields{u: d.u64(), i: d.i64(), b: d.bytes(), s: d.str(), ok: d.bool(), strs: d.strs()}
	return w, d.done("fields")
}

func (w wireFields) equal(o wireFields) bool {
	return w.u == o.u && w.i == o.i && bytes.Equal(w.b, o.b) && w.s == o.s && w.ok == o.ok &&
		slices.Equal(w.strs, o.strs) && len(w.strs) == len(o.strs)
}

var wireCases = []struct {
	name string
	w    wireFields
}{
	{"zero", wireFields{}},
	{"small", wireFields{u: 1, i: -1, b: []byte{0}, s: "a", ok: true, strs: []string{""}}},
	{"varint boundaries", wireFields{u: 128, i: 64, b: bytes.Repeat([]byte{0xff}, 200), s: "é\x00漢", strs: []string{"x", "", "y\x00z"}}},
	{"extremes", wireFields{u: math.MaxUint64, i: math.MinInt64, s: string(bytes.Repeat([]byte("s"), 300)), ok: true}},
	{"max int", wireFields{i: math.MaxInt64, strs: make([]string, 130)}},
}

func TestClusterWireRoundTrip(t *testing.T) {
	for _, tt := range wireCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeWireFields(tt.w.encode())
			if err != nil {
				t.Fatal(err)
			}
			if !got.equal(tt.w) {
				t.Fatalf("round trip = %+v, want %+v", got, tt.w)
			}
		})
	}
}

// Every strict prefix of a payload is an error (the last field always
// takes at least one byte), never a panic or a silently short value.
func TestClusterWireTruncated(t *testing.T) {
	for _, tt := range wireCases {
		b := tt.w.encode()
		for n := range len(b) {
			if _, err := decodeWireFields(b[:n]); !errors.Is(err, errShortPayload) {
				t.Fatalf("%s: prefix %d/%d decoded with err %v", tt.name, n, len(b), err)
			}
		}
	}
}

func TestClusterWireGarbage(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"overlong uvarint", bytes.Repeat([]byte{0xff}, 11)},
		{"huge byte length", binaryUvarint(math.MaxUint64)},
		{"length beyond input", append(binaryUvarint(10), 1, 2, 3)},
		{"huge count", append(binaryUvarint(1<<40), 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dec{b: tt.in}
			_ = d.bytes()
			_ = d.strs()
			if !errors.Is(d.done("x"), errShortPayload) {
				t.Fatalf("garbage %x decoded without error", tt.in)
			}
			// Later reads keep failing with the first error and zero values.
			if d.u64() != 0 || d.bool() || d.str() != "" || d.i64() != 0 || len(d.strs()) != 0 {
				t.Fatal("read after a failure returned a value")
			}
			if !errors.Is(d.done("x"), errShortPayload) {
				t.Fatal("error lost after further reads")
			}
		})
	}
}

// TestClusterWireCountBounded checks that a collection length larger than
// the bytes left is rejected before anything is allocated for it.
func TestClusterWireCountBounded(t *testing.T) {
	var e enc
	e.u64(1 << 30)
	e.b = append(e.b, make([]byte, 16)...)
	allocs := testing.AllocsPerRun(10, func() {
		d := dec{b: e.b}
		if d.strs(); d.err == nil {
			t.Fatal("oversized count accepted")
		}
	})
	if allocs > 1 {
		t.Fatalf("%v allocations for a rejected count", allocs)
	}
}

func binaryUvarint(v uint64) []byte {
	var e enc
	e.u64(v)
	return e.b
}

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

func TestClusterWireOps(t *testing.T) {
	for _, shard := range []uint16{0, 7, math.MaxUint16} {
		var e enc
		encodeOps(&e, testOps(shard))
		got, err := decodeOps(&dec{b: e.b}, shard)
		if err != nil {
			t.Fatalf("shard %d: %v", shard, err)
		}
		if !opsEqual(got, testOps(shard)) {
			t.Fatalf("shard %d: round trip = %v", shard, got)
		}
		for n := range len(e.b) {
			if _, err := decodeOps(&dec{b: e.b[:n]}, shard); err == nil {
				t.Fatalf("shard %d: prefix %d/%d decoded", shard, n, len(e.b))
			}
		}
	}
	var e enc
	encodeOps(&e, nil)
	if ops, err := decodeOps(&dec{b: e.b}, 3); err != nil || len(ops) != 0 {
		t.Fatalf("no ops: %v, %v", ops, err)
	}
}

func TestClusterWireOpsRejected(t *testing.T) {
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
			var e enc
			encodeOps(&e, tt.ops)
			if ops, err := decodeOps(&dec{b: e.b}, 7); err == nil {
				t.Fatalf("decoded %v", ops)
			}
		})
	}
}

func TestClusterWirePush(t *testing.T) {
	tests := []struct {
		app    string
		ids    []string
		except conversation.SessionID
		frame  []byte
	}{
		{"app", []string{"alice", "bob"}, 42, []byte{8, 1, 16, 2}},
		{"", nil, 0, nil},
		{"a", []string{""}, math.MaxUint64, bytes.Repeat([]byte{0}, 300)},
	}
	for _, tt := range tests {
		b := pushPayload(tt.app, tt.ids, tt.except, tt.frame)
		app, ids, except, frame, err := decodePush(&dec{b: b})
		if err != nil {
			t.Fatal(err)
		}
		if app != tt.app || !slices.Equal(ids, tt.ids) || except != tt.except || !bytes.Equal(frame, tt.frame) {
			t.Fatalf("round trip = %q %q %d %x", app, ids, except, frame)
		}
		for n := range len(b) {
			if _, _, _, _, err := decodePush(&dec{b: b[:n]}); !errors.Is(err, errShortPayload) {
				t.Fatalf("prefix %d/%d of push decoded: %v", n, len(b), err)
			}
		}
	}
}

// commandResult encodes a result the way serveCommand does.
func commandResult(t testing.TB, resp *pb.GenericCommand, pe *protocol.Error, failure string) []byte {
	t.Helper()
	var e enc
	switch {
	case pe != nil:
		e.u64(cmdProtocol)
		e.u64(uint64(pe.Code))
		e.str(pe.Reason)
		e.str(pe.Detail)
		e.bool(pe.Temporary)
		e.strs(pe.Pids)
	case failure != "":
		e.u64(cmdFailed)
		e.str(failure)
	default:
		e.u64(cmdOK)
		if resp != nil {
			b, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			e.bytes(b)
		}
	}
	return e.b
}

func TestClusterWireCommandResult(t *testing.T) {
	resp := &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), PeerId: proto.String("alice")}
	got, err := decodeCommandResult(commandResult(t, resp, nil, ""))
	if err != nil || !proto.Equal(got, resp) {
		t.Fatalf("ok result = %v, %v", got, err)
	}
	if got, err := decodeCommandResult(commandResult(t, nil, nil, "")); got != nil || err != nil {
		t.Fatalf("empty ok result = %v, %v", got, err)
	}
	if got, err := decodeCommandResult(commandResult(t, &pb.GenericCommand{}, nil, "")); err != nil || got == nil {
		t.Fatalf("ok result with an empty command = %v, %v", got, err)
	}

	want := &protocol.Error{Code: 4301, Reason: "CONVERSATION_NOT_FOUND", Detail: "d", Temporary: true, Pids: []string{"x", "y"}}
	_, err = decodeCommandResult(commandResult(t, nil, want, ""))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != want.Code || pe.Reason != want.Reason || pe.Detail != want.Detail ||
		pe.Temporary != want.Temporary || !slices.Equal(pe.Pids, want.Pids) {
		t.Fatalf("protocol error result = %#v", err)
	}
	if _, err := decodeCommandResult(commandResult(t, nil, &protocol.Error{Code: -1}, "")); !errors.As(err, &pe) || pe.Code != -1 {
		t.Fatalf("negative code = %#v", err)
	}

	_, err = decodeCommandResult(commandResult(t, nil, nil, "disk on fire"))
	if err == nil || err.Error() != "disk on fire" || errors.As(err, &pe) {
		t.Fatalf("failure result = %#v", err)
	}
}

func TestClusterWireCommandResultCorrupt(t *testing.T) {
	full := [][]byte{
		commandResult(t, nil, &protocol.Error{Code: 4301, Reason: "r", Pids: []string{"p"}}, ""),
		commandResult(t, nil, nil, "failure"),
	}
	for _, b := range full {
		// Prefix 0 is an empty payload; a strict prefix of these always
		// fails (a lone cmdOK byte is the valid empty result, so OK
		// results are not included here).
		for n := range len(b) {
			_, err := decodeCommandResult(b[:n])
			var pe *protocol.Error
			if err == nil || errors.As(err, &pe) {
				t.Fatalf("prefix %d/%d of %x: %v", n, len(b), b, err)
			}
		}
	}
	withBody := commandResult(t, &pb.GenericCommand{PeerId: proto.String("alice")}, nil, "")
	for n := 2; n < len(withBody); n++ {
		if got, err := decodeCommandResult(withBody[:n]); err == nil {
			t.Fatalf("prefix %d/%d of an ok result decoded as %v", n, len(withBody), got)
		}
	}
	// A body that is not a protobuf message.
	var e enc
	e.u64(cmdOK)
	e.bytes([]byte{0xff, 0xff, 0xff})
	if got, err := decodeCommandResult(e.b); err == nil {
		t.Fatalf("garbage protobuf decoded as %v", got)
	}
}

// FuzzDecodeOps feeds arbitrary bytes to the peer payload decoders: they
// must never panic, and whatever they accept must round-trip.
func FuzzDecodeOps(f *testing.F) {
	var e enc
	encodeOps(&e, testOps(7))
	f.Add(uint16(7), e.b)
	f.Add(uint16(7), e.b[:len(e.b)/2])
	f.Add(uint16(0), []byte{})
	f.Add(uint16(0), []byte{0})
	f.Add(uint16(math.MaxUint16), bytes.Repeat([]byte{0xff}, 12))
	f.Add(uint16(1), pushPayload("app", []string{"a", "b"}, 3, []byte("frame")))
	f.Add(uint16(1), commandResult(f, &pb.GenericCommand{PeerId: proto.String("p")}, nil, ""))
	f.Add(uint16(1), commandResult(f, nil, &protocol.Error{Code: 1, Reason: "r", Pids: []string{"x"}}, ""))
	f.Add(uint16(1), commandResult(f, nil, nil, "boom"))
	f.Fuzz(func(t *testing.T, shard uint16, b []byte) {
		if ops, err := decodeOps(&dec{b: b}, shard); err == nil {
			var e enc
			encodeOps(&e, ops)
			again, err := decodeOps(&dec{b: e.b}, shard)
			if err != nil || !opsEqual(again, ops) {
				t.Fatalf("re-encoded ops %v: %v, %v", ops, again, err)
			}
		}
		if app, ids, except, frame, err := decodePush(&dec{b: b}); err == nil {
			b2 := pushPayload(app, ids, except, frame)
			app2, ids2, except2, frame2, err := decodePush(&dec{b: b2})
			if err != nil || app2 != app || !slices.Equal(ids2, ids) || except2 != except || !bytes.Equal(frame2, frame) {
				t.Fatalf("re-encoded push does not round-trip: %v", err)
			}
		}
		_, _ = decodeCommandResult(b)
		_, _ = decodeWireFields(b)
	})
}

// Shard lists round-trip, and a shard at or above the limit is an error.
func TestClusterWireShards(t *testing.T) {
	var e enc
	e.shards([]uint16{0, 7, 255})
	d := dec{b: e.b}
	if got := d.shards(256); d.done("shards") != nil || !slices.Equal(got, []uint16{0, 7, 255}) {
		t.Fatalf("shards = %v, %v", got, d.err)
	}
	d = dec{b: e.b}
	if _, err := d.shards(255), d.done("shards"); err == nil || !strings.Contains(err.Error(), "shard 255 out of range") {
		t.Fatalf("shard over the limit: %v", err)
	}
	d = dec{b: e.b[:len(e.b)-1]}
	if _, err := d.shards(256), d.done("shards"); err == nil {
		t.Fatal("truncated shard list decoded")
	}
}
