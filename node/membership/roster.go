package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/imcluster/imcluster/node/ring"
)

// entry is one node's roster record.
type entry struct {
	State ring.State
	Seq   uint64
}

// newer reports whether e wins over old when merging: higher seq, or equal
// seq and a later lifecycle state (concurrent writers of the same seq can
// only be the node and an admin removing it; removal wins).
func (e entry) newer(old entry) bool {
	return e.Seq > old.Seq || (e.Seq == old.Seq && e.State > old.State)
}

// tableFormat is the first byte of an encoded roster table.
const tableFormat = 1

// maxTableEntries bounds a decoded table so a hostile peer cannot make us
// allocate without limit; node ids are StatefulSet ordinals, far fewer.
const maxTableEntries = 1 << 12

// encodeTable appends the table encoding: format, uvarint count, then per
// entry a uvarint-length id, a state byte and a uvarint seq.
func encodeTable(b []byte, t map[string]entry) []byte {
	b = append(b, tableFormat)
	b = binary.AppendUvarint(b, uint64(len(t)))
	for id, e := range t {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = append(b, byte(e.State))
		b = binary.AppendUvarint(b, e.Seq)
	}
	return b
}

// decodeTable decodes an encoded table. It never panics.
func decodeTable(b []byte) (map[string]entry, error) {
	if len(b) < 1 || b[0] != tableFormat {
		return nil, fmt.Errorf("%w: roster table format %v", ErrBadMeta, firstByte(b))
	}
	d := decoder{b: b[1:]}
	n := d.uvarint()
	if n > maxTableEntries {
		return nil, fmt.Errorf("%w: roster table of %d entries", ErrBadMeta, n)
	}
	t := make(map[string]entry, n)
	for range n {
		id := d.string()
		if d.err == nil && len(d.b) == 0 {
			d.err = fmt.Errorf("%w: truncated roster entry", ErrBadMeta)
		}
		if d.err != nil {
			return nil, d.err
		}
		st := ring.State(d.b[0])
		d.b = d.b[1:]
		seq := d.uvarint()
		if d.err != nil {
			return nil, d.err
		}
		if id == "" || !st.Valid() {
			return nil, fmt.Errorf("%w: roster entry %q state %d", ErrBadMeta, id, st)
		}
		t[id] = entry{State: st, Seq: seq}
	}
	return t, nil
}
