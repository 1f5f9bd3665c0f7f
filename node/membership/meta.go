package membership

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/ring"
)

// metaFormat is the first byte of an encoded Meta; bump it when the layout
// changes, and keep decoding the old one.
const metaFormat = 1

// maxMetaSize is memberlist's limit on node meta (memberlist.MetaMaxSize).
const maxMetaSize = 512

// ErrBadMeta is returned for malformed meta or state bytes from a peer.
var ErrBadMeta = errors.New("membership: malformed meta")

// Meta is a node's gossiped state record.
type Meta struct {
	ID         string
	State      ring.State
	Seq        uint64 // incarnation of State; see the package doc
	ClientAddr string // host:port of the client (WebSocket/REST) listener
	PeerAddr   string // host:port of the peer transport
	AdminAddr  string // host:port of the admin API
	Version    string // software version
}

// encodeMeta appends the binary encoding of m to b.
func encodeMeta(b []byte, m *Meta) []byte {
	b = append(b, metaFormat, byte(m.State))
	b = binary.AppendUvarint(b, m.Seq)
	for _, s := range []string{m.ID, m.ClientAddr, m.PeerAddr, m.AdminAddr, m.Version} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeMeta decodes an encoded Meta. It never panics.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < 2 || b[0] != metaFormat {
		return m, fmt.Errorf("%w: %d bytes, format %v", ErrBadMeta, len(b), firstByte(b))
	}
	m.State = ring.State(b[1])
	if !m.State.Valid() {
		return m, fmt.Errorf("%w: state %d", ErrBadMeta, b[1])
	}
	d := decoder{b: b[2:]}
	m.Seq = d.uvarint()
	for _, s := range []*string{&m.ID, &m.ClientAddr, &m.PeerAddr, &m.AdminAddr, &m.Version} {
		*s = d.string()
	}
	if d.err != nil {
		return m, d.err
	}
	if m.ID == "" {
		return m, fmt.Errorf("%w: empty id", ErrBadMeta)
	}
	return m, nil
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}

// decoder reads uvarints and length-prefixed strings, remembering the
// first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad uvarint", ErrBadMeta)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: string of %d bytes, %d left", ErrBadMeta, n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
