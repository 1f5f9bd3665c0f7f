package wire

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

type wireFields struct {
	u    uint64
	i    int64
	b    []byte
	s    string
	ok   bool
	strs []string
}

func (w wireFields) encode() []byte {
	var e Enc
	e.U64(w.u)
	e.I64(w.i)
	e.Bytes(w.b)
	e.Str(w.s)
	e.Bool(w.ok)
	e.Strs(w.strs)
	return e.B
}

func decodeWireFields(b []byte) (wireFields, error) {
	d := Dec{B: b}
	w := wireFields{u: d.U64(), i: d.I64(), b: d.Bytes(), s: d.Str(), ok: d.Bool(), strs: d.Strs()}
	return w, d.Done("fields")
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

func TestWireRoundTrip(t *testing.T) {
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

func TestWireTruncated(t *testing.T) {
	for _, tt := range wireCases {
		b := tt.w.encode()
		for n := range len(b) {
			if _, err := decodeWireFields(b[:n]); !errors.Is(err, ErrShortPayload) {
				t.Fatalf("%s: prefix %d/%d decoded with err %v", tt.name, n, len(b), err)
			}
		}
	}
}

func TestWireGarbage(t *testing.T) {
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
			d := Dec{B: tt.in}
			_ = d.Bytes()
			_ = d.Strs()
			if !errors.Is(d.Done("x"), ErrShortPayload) {
				t.Fatalf("garbage %x decoded without error", tt.in)
			}
			// Later reads keep failing with the first error and zero values.
			if d.U64() != 0 || d.Bool() || d.Str() != "" || d.I64() != 0 || len(d.Strs()) != 0 {
				t.Fatal("read after a failure returned a value")
			}
			if !errors.Is(d.Done("x"), ErrShortPayload) {
				t.Fatal("error lost after further reads")
			}
		})
	}
}

func TestWireCountBounded(t *testing.T) {
	var e Enc
	e.U64(1 << 30)
	e.B = append(e.B, make([]byte, 16)...)
	allocs := testing.AllocsPerRun(10, func() {
		d := Dec{B: e.B}
		if d.Strs(); d.Err == nil {
			t.Fatal("oversized count accepted")
		}
	})
	if allocs > 1 {
		t.Fatalf("%v allocations for a rejected count", allocs)
	}
}

func binaryUvarint(v uint64) []byte {
	var e Enc
	e.U64(v)
	return e.B
}

func TestWireShards(t *testing.T) {
	var e Enc
	e.Shards([]uint16{0, 7, 255})
	d := Dec{B: e.B}
	if got := d.Shards(256); d.Done("shards") != nil || !slices.Equal(got, []uint16{0, 7, 255}) {
		t.Fatalf("shards = %v, %v", got, d.Err)
	}
	d = Dec{B: e.B}
	if _, err := d.Shards(255), d.Done("shards"); err == nil || !strings.Contains(err.Error(), "shard 255 out of range") {
		t.Fatalf("shard over the limit: %v", err)
	}
	d = Dec{B: e.B[:len(e.B)-1]}
	if _, err := d.Shards(256), d.Done("shards"); err == nil {
		t.Fatal("truncated shard list decoded")
	}
}

func FuzzWireFields(f *testing.F) {
	for _, tt := range wireCases {
		f.Add(tt.w.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if w, err := decodeWireFields(b); err == nil {
			if got, err := decodeWireFields(w.encode()); err != nil || !got.equal(w) {
				t.Fatalf("re-encoded fields do not round-trip: %v", err)
			}
		}
	})
}
