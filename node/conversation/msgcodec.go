package conversation

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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

// decodeMessage decodes a stored message record, JSON or binary. It is the
// one decoder of message records; v is not retained.
func decodeMessage(v []byte) (*message, error) {
	var m message
	if err := decodeMessageInto(&m, v, false); err != nil {
		return nil, internal("decode message", err)
	}
	return &m, nil
}

// decodeMessageInto decodes a stored message record into m. With head set
// it may skip the content (Data and Bin), for a caller that needs only the
// rest (receipts.go).
func decodeMessageInto(m *message, v []byte, head bool) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: empty", errMsgRecord)
	}
	if v[0] != msgCodecV1 {
		if !head {
			return json.Unmarshal(v, m)
		}
		var h jsonHead
		if err := json.Unmarshal(v, &h); err != nil {
			return err
		}
		m.ID, m.From, m.Ts, m.Receipt, m.GroupRcp, m.To = h.ID, h.From, h.Ts, h.Receipt, h.GroupRcp, h.To
		return nil
	}
	d := msgDecoder{b: v[1:]}
	flags := d.uvarint()
	if flags&^msgFlagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errMsgRecord, flags)
	}
	m.IsBin = flags&msgFlagIsBin != 0
	m.Receipt = flags&msgFlagReceipt != 0
	m.GroupRcp = flags&msgFlagGroupRcp != 0
	m.MentionAll = flags&msgFlagMentionAll != 0
	m.HasType = flags&msgFlagHasType != 0
	m.ID = d.str()
	m.From = d.str()
	m.Ts = d.varint()
	if flags&msgHasData != 0 {
		if head {
			d.bytes()
		} else {
			m.Data = d.str()
		}
	}
	if flags&msgHasBin != 0 {
		if bin := d.bytes(); !head && d.err == nil {
			m.Bin = append([]byte(nil), bin...)
		}
	}
	if flags&msgHasType != 0 {
		m.Type = d.varint()
	}
	if flags&msgHasPatchTs != 0 {
		m.PatchTs = d.varint()
	}
	if flags&msgHasMentions != 0 {
		m.MentionPids = d.strs()
	}
	if flags&msgHasTo != 0 {
		m.To = d.strs()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d bytes left over", errMsgRecord, len(d.b))
	}
	return d.err
}

// jsonHead is what decodeMessageInto with head set decodes of a JSON
// record: these fields of message, under the same JSON names, so decoding
// one skips its content (TestConversationMsgHeadDecode checks they agree).
type jsonHead struct {
	ID       string   `json:"id"`
	From     string   `json:"f"`
	Ts       int64    `json:"t"`
	Receipt  bool     `json:"r,omitempty"`
	GroupRcp bool     `json:"gr,omitempty"`
	To       []string `json:"to,omitempty"`
}

// msgDecoder reads a binary message record; the first error sticks and
// every later read returns zero values.
type msgDecoder struct {
	b   []byte
	err error
}

func (d *msgDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", errMsgRecord, what)
	}
	d.b = nil
}

func (d *msgDecoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *msgDecoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// bytes returns the next length-prefixed bytes, aliasing the record.
func (d *msgDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *msgDecoder) str() string { return string(d.bytes()) }

func (d *msgDecoder) strs() []string {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n == 0 || n > uint64(len(d.b)) { // each string takes at least one byte
		d.fail("count")
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, d.str())
	}
	if d.err != nil {
		return nil
	}
	return out
}
