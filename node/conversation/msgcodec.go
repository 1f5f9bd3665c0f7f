package conversation

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/wire"
)

// The stored message record (value of FamMsg).
//
// putMessage writes JSON objects (the json tags of message). decodeMessage
// also reads a compact binary record, so that a later release can write it
// (smaller values and no encoding/json on the send path) while a cluster
// rolled to it still has nodes of this release, which read both, and can be
// rolled back to this release: a release that writes a format its previous
// release cannot read would break sends at every node of that release which
// takes over a conversation whose newest message is in it (nextTsLocked
// decodes it). The binary record (msgcodec_test.go's encodeMessage writes
// it):
//
//	msgCodecV1                     1 byte, a value no JSON text starts with
//	flags                          uvarint, msgFlag* bits
//	id, from                       uvarint length + bytes each
//	ts                             varint
//	data        if msgHasData      uvarint length + bytes
//	bin         if msgHasBin       uvarint length + bytes
//	type        if msgHasType      varint
//	patchTs     if msgHasPatchTs   varint
//	mentionPids if msgHasMentions  uvarint count, then uvarint length + bytes each
//	to          if msgHasTo        uvarint count, then uvarint length + bytes each
//
// decodeMessage reads both. A binary record that has flags it does not know,
// ends early or has bytes left over is an error, never a panic.
const msgCodecV1 = 0x01

// Flags of a binary message record: booleans of message, and which optional
// fields follow (empty ones are left out, as the JSON encoding omits them).
const (
	msgFlagIsBin = 1 << iota
	msgFlagReceipt
	msgFlagGroupRcp
	msgFlagMentionAll
	msgFlagHasType // message.HasType
	msgHasData
	msgHasBin
	msgHasType // Type != 0
	msgHasPatchTs
	msgHasMentions
	msgHasTo
	msgFlagsKnown = 1<<iota - 1
)

// errMsgRecord is the cause of every error decoding a binary record.
var errMsgRecord = errors.New("bad message record")

// decodeMessage decodes a stored message record, JSON or binary. With
// decodeMessageHead it is the one decoder of message records; v is not
// retained.
func decodeMessage(v []byte) (*message, error) {
	var m message
	var err error
	switch {
	case len(v) == 0:
		err = fmt.Errorf("%w: empty", errMsgRecord)
	case v[0] != msgCodecV1:
		err = json.Unmarshal(v, &m)
	default:
		err = decodeBinary(&m, v, false)
	}
	if err != nil {
		return nil, internal("decode message", err)
	}
	return &m, nil
}

// decodeMessageHead decodes what receiver acks and reads need of a stored
// message record (msgHead), without its content.
func decodeMessageHead(v []byte) (msgHead, error) {
	var h msgHead
	switch {
	case len(v) == 0:
		return h, fmt.Errorf("%w: empty", errMsgRecord)
	case v[0] != msgCodecV1:
		err := json.Unmarshal(v, &h) // msgHead's fields carry message's JSON names
		return h, err
	}
	var m message
	if err := decodeBinary(&m, v, true); err != nil {
		return h, err
	}
	return msgHead{ID: m.ID, From: m.From, Ts: m.Ts, Receipt: m.Receipt, GroupRcp: m.GroupRcp, To: m.To}, nil
}

// decodeBinary decodes a binary record (v[0] is msgCodecV1) into m, with
// the field primitives of the peer protocol's codec (wire.Dec: uvarints,
// varints, length-prefixed bytes). With head set it skips the content (Data
// and Bin).
func decodeBinary(m *message, v []byte, head bool) error {
	d := wire.Dec{B: v[1:]}
	flags := d.U64()
	if flags&^msgFlagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errMsgRecord, flags)
	}
	m.IsBin = flags&msgFlagIsBin != 0
	m.Receipt = flags&msgFlagReceipt != 0
	m.GroupRcp = flags&msgFlagGroupRcp != 0
	m.MentionAll = flags&msgFlagMentionAll != 0
	m.HasType = flags&msgFlagHasType != 0
	m.ID = d.Str()
	m.From = d.Str()
	m.Ts = d.I64()
	if flags&msgHasData != 0 {
		if head {
			d.Bytes()
		} else {
			m.Data = d.Str()
		}
	}
	if flags&msgHasBin != 0 {
		if bin := d.Bytes(); !head && d.Err == nil {
			m.Bin = append([]byte(nil), bin...)
		}
	}
	if flags&msgHasType != 0 {
		m.Type = d.I64()
	}
	if flags&msgHasPatchTs != 0 {
		m.PatchTs = d.I64()
	}
	if flags&msgHasMentions != 0 {
		m.MentionPids = nonEmptyStrs(&d)
	}
	if flags&msgHasTo != 0 {
		m.To = nonEmptyStrs(&d)
	}
	switch {
	case d.Err != nil:
		return fmt.Errorf("%w: %w", errMsgRecord, d.Err)
	case len(d.B) != 0:
		return fmt.Errorf("%w: %d bytes left over", errMsgRecord, len(d.B))
	}
	return nil
}

// errEmptyList is a list field whose flag is set but which has no element
// (the flag is set only for a list that has some).
var errEmptyList = errors.New("empty list")

// nonEmptyStrs reads a list of strings that has at least one element.
func nonEmptyStrs(d *wire.Dec) []string {
	ss := d.Strs()
	if d.Err == nil && len(ss) == 0 {
		d.Err, d.B = errEmptyList, nil
	}
	if d.Err != nil {
		return nil
	}
	return ss
}
