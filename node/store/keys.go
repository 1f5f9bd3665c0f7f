package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Family separates the kinds of records inside one (shard, app) range. The
// byte values are disk format: never reuse or renumber one.
type Family byte

// Key families. The component layout after the family is given per family;
// "str" is an escaped string component, "i64" a signed 64-bit integer, both
// order-preserving.
const (
	// FamConv: conversation record. Components: cid.
	FamConv Family = 'c'
	// FamMsg: stored message. Components: cid, i64 timestamp, str message id.
	FamMsg Family = 'm'
	// FamMsgID: message id to timestamp. Components: cid, str message id.
	FamMsgID Family = 'i'
	// FamUnique: unique-conversation key (member-set hash) to cid. Components: uniqueId.
	FamUnique Family = 'u'
	// FamDedup: (cid, sender, dt) to message id, for resend de-duplication.
	FamDedup Family = 'd'
	// FamClientConv: per-client conversation index. Components: clientId, cid.
	FamClientConv Family = 'x'
	// FamClientState: per-client per-conversation state (read pointer, acks). Components: clientId, cid.
	FamClientState Family = 's'
	// FamNotif: reliable notification log. Components: clientId, i64 serverTs, str seq.
	FamNotif Family = 'n'
	// FamPatch: message patches (edits/recalls) log per conversation. Components: cid, i64 patchTimestamp, str mid.
	FamPatch Family = 'p'
	// FamToken: session tokens. Components: token.
	FamToken Family = 't'
	// FamUser: storage-REST users (node/storage). Components defined there.
	FamUser Family = 'U'
	// FamFile: storage-REST files (node/storage). Components defined there.
	FamFile Family = 'F'
	// FamRoom: chat-room members online (joined, not left). Components:
	// cid, clientId.
	FamRoom Family = 'r'
	// FamSub: subscription of a client to a system conversation (JSON
	// {at, mu}). Components: cid, clientId.
	FamSub Family = 'b'
	// FamPush: offline push entry of a message (JSON, conversation/push.go).
	// Components: cid, message id.
	FamPush Family = 'o'
	// FamMeta: node-local metadata (no app). Components defined by the user.
	FamMeta Family = 'M'
	// FamOutbox: effects of a conversation's commands in other shards,
	// waiting to be applied there (no app in the key prefix, so one scan of
	// a shard's outbox sees every app). Built by OutboxKey; components: str
	// app, str cid, i64 sequence, i64 version of the first op (optional).
	FamOutbox Family = 'O'
	// FamOrder: the order index of app-wide conversation queries, kept in
	// the shard of each conversation. Components: str order, then either
	// nothing (the order's marker: the index covers the shard) or i64
	// ^value, str cid (see OrderIndexKey).
	FamOrder Family = 'q'
)

// Component tags make decoding self-checking and keep strings and integers
// from ever comparing equal.
const (
	tagString = 0x10
	tagInt64  = 0x20
)

// Key is an encoded key under construction. Methods append a component and
// return the extended key; the receiver's backing array may be shared, so
// treat a Key as a value and do not append to the same Key twice.
type Key []byte

// NewKey starts a key for (shard, app, family). app must not be empty except
// for FamMeta and FamOutbox.
func NewKey(shard uint16, app string, fam Family) Key {
	k := make(Key, 0, 64)
	k = binary.BigEndian.AppendUint16(k, shard)
	k = appendString(k, app)
	return append(k, byte(fam))
}

// OutboxPrefix returns the prefix of every outbox entry of shard: the keys
// of all apps' entries sort together at the start of the shard.
func OutboxPrefix(shard uint16) Key { return NewKey(shard, "", FamOutbox) }

// OutboxKey returns the prefix of the outbox entries of conversation cid of
// app in shard (the conversation's shard); an entry appends its i64
// sequence, so a conversation's entries sort in the order they were written.
func OutboxKey(shard uint16, app, cid string) Key { return OutboxPrefix(shard).Str(app).Str(cid) }

// ShardPrefix returns the prefix of every key of a shard.
func ShardPrefix(shard uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, shard)
}

// ShardOf returns the shard a key belongs to.
func ShardOf(key []byte) (uint16, error) {
	if len(key) < 2 {
		return 0, fmt.Errorf("%w: short key", ErrCorruptKey)
	}
	return binary.BigEndian.Uint16(key), nil
}

// Str appends a string component.
func (k Key) Str(s string) Key { return append(appendTag(k, tagString), escape(s)...) }

// Int64 appends a signed integer component that sorts numerically.
func (k Key) Int64(v int64) Key {
	k = appendTag(k, tagInt64)
	return binary.BigEndian.AppendUint64(k, uint64(v)^(1<<63))
}

// Bytes returns the encoded key.
func (k Key) Bytes() []byte { return k }

// PrefixEnd returns the smallest key greater than every key with prefix p,
// for use as an exclusive upper bound. It returns nil if there is none.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// ErrCorruptKey is returned when a key cannot be decoded.
var ErrCorruptKey = errors.New("store: corrupt key")

// KeyReader decodes the components of a key built with NewKey.
type KeyReader struct {
	b   []byte
	err error
}

// ReadKey starts decoding key and returns its shard, app and family.
func ReadKey(key []byte) (r *KeyReader, shard uint16, app string, fam Family) {
	r = &KeyReader{b: key}
	if len(key) < 2 {
		r.err = fmt.Errorf("%w: short key", ErrCorruptKey)
		return r, 0, "", 0
	}
	shard = binary.BigEndian.Uint16(key)
	r.b = key[2:]
	app = r.str()
	if r.err == nil {
		if len(r.b) == 0 {
			r.err = fmt.Errorf("%w: missing family", ErrCorruptKey)
		} else {
			fam = Family(r.b[0])
			r.b = r.b[1:]
		}
	}
	return r, shard, app, fam
}

// Str decodes the next string component.
func (r *KeyReader) Str() string {
	if !r.tag(tagString) {
		return ""
	}
	return r.str()
}

// Int64 decodes the next integer component.
func (r *KeyReader) Int64() int64 {
	if !r.tag(tagInt64) {
		return 0
	}
	if len(r.b) < 8 {
		r.err = fmt.Errorf("%w: short int64", ErrCorruptKey)
		return 0
	}
	v := int64(binary.BigEndian.Uint64(r.b) ^ (1 << 63))
	r.b = r.b[8:]
	return v
}

// Err reports the first decoding error.
func (r *KeyReader) Err() error { return r.err }

func (r *KeyReader) tag(t byte) bool {
	if r.err != nil {
		return false
	}
	if len(r.b) == 0 || r.b[0] != t {
		r.err = fmt.Errorf("%w: expected component tag %#x", ErrCorruptKey, t)
		return false
	}
	r.b = r.b[1:]
	return true
}

// str decodes an escaped string: 0x00 is written as 0x00 0xff and the string
// ends with 0x00 0x01, which keeps byte order equal to string order.
func (r *KeyReader) str() string {
	var out []byte
	for i := 0; i < len(r.b); i++ {
		c := r.b[i]
		if c != 0 {
			out = append(out, c)
			continue
		}
		if i+1 >= len(r.b) {
			break
		}
		switch r.b[i+1] {
		case 0x01:
			r.b = r.b[i+2:]
			return string(out)
		case 0xff:
			out = append(out, 0)
			i++
		default:
			r.err = fmt.Errorf("%w: bad escape", ErrCorruptKey)
			return ""
		}
	}
	r.err = fmt.Errorf("%w: unterminated string", ErrCorruptKey)
	return ""
}

func appendTag(k Key, t byte) Key { return append(k, t) }

func appendString(k []byte, s string) []byte { return append(k, escape(s)...) }

func escape(s string) []byte {
	out := make([]byte, 0, len(s)+2)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			out = append(out, 0, 0xff)
			continue
		}
		out = append(out, s[i])
	}
	return append(out, 0, 0x01)
}

// OrderIndexPrefix returns the prefix of one order (e.g. "lm") of the
// order index of (shard, app). The prefix itself is the order's marker key:
// it sorts before every entry, so a scan of the prefix meets it first.
func OrderIndexPrefix(shard uint16, app, order string) Key {
	return NewKey(shard, app, FamOrder).Str(order)
}

// OrderIndexKey returns the order index entry of cid at value v. Entries
// sort by v descending (the component is ^v), then by cid ascending: the
// order of a query sorted by the value descending with ties broken by
// objectId.
func OrderIndexKey(shard uint16, app, order string, v int64, cid string) []byte {
	return OrderIndexPrefix(shard, app, order).Int64(^v).Str(cid).Bytes()
}

// ReadOrderIndexKey decodes a key under OrderIndexPrefix: the entry's value
// and cid, or marker true for the marker key itself.
func ReadOrderIndexKey(key []byte) (v int64, cid string, marker bool, err error) {
	r, _, _, fam := ReadKey(key)
	if r.Err() == nil && fam != FamOrder {
		return 0, "", false, fmt.Errorf("%w: family %q is not the order index", ErrCorruptKey, fam)
	}
	_ = r.Str()
	if r.Err() == nil && len(r.b) == 0 {
		return 0, "", true, nil
	}
	inv := r.Int64()
	cid = r.Str()
	if r.Err() == nil && len(r.b) != 0 {
		return 0, "", false, fmt.Errorf("%w: trailing bytes after an order index entry", ErrCorruptKey)
	}
	return ^inv, cid, false, r.Err()
}
