package membership

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/ring"
)

// metaFormat is the first byte of an encoded Meta; bump it when the layout
// changes, and keep decoding the old one. Format 1 lacks the cluster
// settings (ClusterID, Shards, ReplicationFactor, WriteQuorum): a node that
// gossips it is checked on nothing but its id and address.
const (
	metaFormat  = 2
	metaFormat1 = 1

	metaFlagNew = 1 << 0
)

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

	// Cluster settings every member must share (zero values: unknown).
	ClusterID         string // empty: unknown
	New               bool   // never a member yet (Config.New)
	Shards            int
	ReplicationFactor int
	WriteQuorum       int
}

// encodeMeta appends the binary encoding of m to b.
func encodeMeta(b []byte, m *Meta) []byte {
	b = append(b, metaFormat, byte(m.State))
	b = binary.AppendUvarint(b, m.Seq)
	for _, s := range []string{m.ID, m.ClientAddr, m.PeerAddr, m.AdminAddr, m.Version} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.ClusterID)))
	b = append(b, m.ClusterID...)
	for _, n := range []int{m.Shards, m.ReplicationFactor, m.WriteQuorum} {
		b = binary.AppendUvarint(b, uint64(n)) //nolint:gosec // settings are validated positive
	}
	var flags byte
	if m.New {
		flags |= metaFlagNew
	}
	return append(b, flags)
}

// decodeMeta decodes an encoded Meta. It never panics.
func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < 2 || (b[0] != metaFormat && b[0] != metaFormat1) {
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
	if b[0] == metaFormat {
		m.ClusterID = d.string()
		for _, n := range []*int{&m.Shards, &m.ReplicationFactor, &m.WriteQuorum} {
			v := d.uvarint()
			if v > 1<<20 {
				return m, fmt.Errorf("%w: setting %d out of range", ErrBadMeta, v)
			}
			*n = int(v)
		}
		flags := d.byte()
		m.New = flags&metaFlagNew != 0
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

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("%w: missing flags", ErrBadMeta)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
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
