package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrShortPayload is a payload that ends before its last field.
var ErrShortPayload = errors.New("wire: truncated payload")

// Enc appends fields to B.
type Enc struct{ B []byte }

// U64 appends an unsigned integer.
func (e *Enc) U64(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// I64 appends a signed integer.
func (e *Enc) I64(v int64) { e.B = binary.AppendVarint(e.B, v) }

// Bytes appends a length-prefixed byte string.
func (e *Enc) Bytes(v []byte) { e.U64(uint64(len(v))); e.B = append(e.B, v...) }

// Str appends a length-prefixed string.
func (e *Enc) Str(v string) { e.U64(uint64(len(v))); e.B = append(e.B, v...) }

// Bool appends one byte, 1 or 0.
func (e *Enc) Bool(v bool) {
	if v {
		e.B = append(e.B, 1)
	} else {
		e.B = append(e.B, 0)
	}
}

// Shards appends a list of shard numbers.
func (e *Enc) Shards(v []uint16) {
	e.U64(uint64(len(v)))
	for _, s := range v {
		e.U64(uint64(s))
	}
}

// Strs appends a list of strings.
func (e *Enc) Strs(v []string) {
	e.U64(uint64(len(v)))
	for _, s := range v {
		e.Str(s)
	}
}

// Dec reads fields from B. A read past the end sets Err (once) and returns
// zero values; Done reports it. Decoding never panics.
type Dec struct {
	B   []byte
	Err error
}

func (d *Dec) fail() {
	if d.Err == nil {
		d.Err = ErrShortPayload
	}
}

// U64 reads an unsigned integer.
func (d *Dec) U64() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.fail()
		d.B = nil
		return 0
	}
	d.B = d.B[n:]
	return v
}

// I64 reads a signed integer.
func (d *Dec) I64() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.fail()
		d.B = nil
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Bytes reads a length-prefixed byte string (aliasing B).
func (d *Dec) Bytes() []byte {
	n := d.U64()
	if n > uint64(len(d.B)) {
		d.fail()
		d.B = nil
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// Str reads a length-prefixed string.
func (d *Dec) Str() string { return string(d.Bytes()) }

// Bool reads one byte.
func (d *Dec) Bool() bool {
	if len(d.B) == 0 {
		d.fail()
		return false
	}
	v := d.B[0] == 1
	d.B = d.B[1:]
	return v
}

// Count reads a collection length, bounded by the bytes left (every
// element takes at least one byte), so garbage cannot make us allocate.
func (d *Dec) Count() int {
	n := d.U64()
	if n > uint64(len(d.B)) {
		d.fail()
		d.B = nil
		return 0
	}
	return int(n)
}

// Shards reads a list of shard numbers, each below limit (the cluster's
// shard count).
func (d *Dec) Shards(limit int) []uint16 {
	n := d.Count()
	out := make([]uint16, 0, n)
	for range n {
		s := d.U64()
		if d.Err == nil && s >= uint64(limit) {
			d.Err = fmt.Errorf("shard %d out of range [0, %d)", s, limit)
		}
		out = append(out, uint16(s))
	}
	return out
}

// Strs reads a list of strings.
func (d *Dec) Strs() []string {
	n := d.Count()
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.Str())
	}
	return out
}

// Done returns the decoding error of what, if any.
func (d *Dec) Done(what string) error {
	if d.Err != nil {
		return fmt.Errorf("cluster: decode %s: %w", what, d.Err)
	}
	return nil
}
