package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Field documents. A record that several coordinators may update at once
// (a conversation: its fields, members and attributes; a client's read
// pointers) is stored as a document of named fields, each with its own
// version, so concurrent updates of different fields (or members) both
// survive the merge:
//
//	VersionDoc | version (8, BE: the highest version in the doc) | floor (8, BE) | entry...
//	entry: uvarint len(name) | name | version (8, BE) | flag (0 value, 1 tombstone) | [uvarint len(value) | value]
//
// Entries are sorted by name, each name once, every entry version above the
// floor (the version of the last whole-record deletion: fields at or below
// it are gone). The 9-byte header is the versioned record's, so digests and
// clock observation read every kind alike.
//
// The merger combines docs per field: the highest version wins, a tie goes
// to a tombstone, then to the greater value bytes, so every replica picks
// the same. The floors combine by max; a whole-record tombstone at T raises
// the floor to T. A field tombstone is kept (it must beat a late, older
// add of the field) until it is FieldTombstoneGrace older than the doc's
// highest version. A doc whose entries are all gone is stored as the
// whole-record tombstone of its floor. A plain VersionValue against a doc
// compares as whole records (the highest header version wins, a doc wins a
// tie): a record written before it was a doc is replaced by its first doc
// write, which writes every field. Docs and tombstones merge commutatively,
// associatively and idempotently (up to the tombstone grace, see
// FieldTombstoneGrace); mixing plain values and docs of one key is not
// associative and happens only while such records are upgraded.
//
// Readers never see docs: the cluster's reads and the plain Store (which
// applies OpMergeFields by read-modify-write) return a fields value, its
// live fields without versions, decoded by DecodeFields or RangeFields:
//
//	fieldsFormat | entry... (entry without version, flag 0)
const VersionDoc byte = 3

// FieldTombstoneGrace is how long a field tombstone outlives its deletion,
// measured against the newest version in its doc: a replica that missed
// both an add and a later delete of a field for longer than this may bring
// the add back, so a replica away longer must be rebuilt (as with
// Cassandra's gc_grace). Versions are hybrid-logical-clock values, Unix
// milliseconds shifted left versionLogicalBits (node/cluster's hlc).
const FieldTombstoneGrace = 7 * 24 * time.Hour

// versionLogicalBits is the logical-counter width of a version (the
// cluster's hlcLogicalBits): a version is (ms << 16) | counter.
const versionLogicalBits = 16

// graceVersions is FieldTombstoneGrace in version units.
const graceVersions = uint64(FieldTombstoneGrace/time.Millisecond) << versionLogicalBits

// MaxFieldName bounds a field name in bytes. A batch with a longer name
// fails to commit (see Batch.MergeFields).
const MaxFieldName = 1 << 14

// docHeader is the versioned header plus the floor.
const docHeader = versionHeader + 8

// fieldsFormat starts a fields value (never '{': a legacy JSON record
// starts with it).
const fieldsFormat byte = 0xF1

// Field is one named field of a doc: a value, or the deletion of the field.
type Field struct {
	Name    string
	Value   []byte
	Deleted bool
}

// docEntry is one decoded entry; name and value alias the encoded bytes.
type docEntry struct {
	name    []byte
	version uint64
	tomb    bool
	value   []byte
}

// wins reports whether e beats o, an entry of the same name.
func (e *docEntry) wins(o *docEntry) bool {
	if e.version != o.version {
		return e.version > o.version
	}
	if e.tomb != o.tomb {
		return e.tomb
	}
	return bytes.Compare(e.value, o.value) > 0
}

// expired reports whether a field tombstone at v is past the grace in a
// doc whose newest version is newest.
func expired(v, newest uint64) bool { return newest > graceVersions && v < newest-graceVersions }

// readEntry decodes one entry from the front of b (with a version when
// versioned) and returns the rest. The entry aliases b.
func readEntry(b []byte, versioned bool) (e docEntry, rest []byte, err error) {
	n, k := uvarint(b)
	if k <= 0 || n > MaxFieldName || n > uint64(len(b)-k) {
		return e, nil, ErrCorruptValue
	}
	b = b[k:]
	e.name, b = b[:n:n], b[n:]
	if versioned {
		if len(b) < 8 {
			return e, nil, ErrCorruptValue
		}
		e.version, b = binary.BigEndian.Uint64(b), b[8:]
	}
	if len(b) < 1 || b[0] > 1 {
		return e, nil, ErrCorruptValue
	}
	e.tomb, b = b[0] == 1, b[1:]
	if e.tomb {
		return e, b, nil
	}
	n, k = uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return e, nil, ErrCorruptValue
	}
	end := k + int(n)
	e.value = b[k:end:end]
	return e, b[end:], nil
}

// uvarint is binary.Uvarint rejecting overlong encodings (k = 0), so
// every value has one encoding and valid records are canonical.
func uvarint(b []byte) (n uint64, k int) {
	n, k = binary.Uvarint(b)
	if k > 1 && b[k-1] == 0 {
		return 0, 0
	}
	return n, k
}

func appendEntry(dst []byte, e *docEntry, versioned bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(e.name)))
	dst = append(dst, e.name...)
	if versioned {
		dst = binary.BigEndian.AppendUint64(dst, e.version)
	}
	if e.tomb {
		return append(dst, 1)
	}
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(len(e.value)))
	return append(dst, e.value...)
}

func entrySize(e *docEntry) int { return 2*binary.MaxVarintLen32 + 9 + len(e.name) + len(e.value) }

// forEachDocEntry validates a doc record and calls fn for each entry in
// order. It returns the doc's version and floor.
func forEachDocEntry(rec []byte, fn func(e *docEntry)) (version, floor uint64, err error) {
	if len(rec) < docHeader || rec[0] != VersionDoc {
		return 0, 0, ErrCorruptValue
	}
	version = binary.BigEndian.Uint64(rec[1:])
	floor = binary.BigEndian.Uint64(rec[versionHeader:])
	b := rec[docHeader:]
	newest, n := floor, 0
	var prev []byte
	for len(b) > 0 {
		var e docEntry
		if e, b, err = readEntry(b, true); err != nil {
			return 0, 0, err
		}
		if e.version <= floor || (n > 0 && bytes.Compare(prev, e.name) >= 0) || (e.tomb && expired(e.version, version)) {
			return 0, 0, ErrCorruptValue
		}
		newest = max(newest, e.version)
		prev = e.name
		n++
		fn(&e)
	}
	if n == 0 || newest != version {
		return 0, 0, ErrCorruptValue
	}
	return version, floor, nil
}

// validDoc reports whether rec is a canonical doc record (what the merger
// produces): the form replicas accept.
func validDoc(rec []byte) error {
	_, _, err := forEachDocEntry(rec, func(*docEntry) {})
	return err
}

// DocRecord returns the VersionDoc record of an OpMergeFields value: every
// field at version (a deleted field as a field tombstone), floor 0. version
// must be above 0. The coordinator calls it; the merger does the rest.
func DocRecord(version uint64, mergeValue []byte) ([]byte, error) {
	if version == 0 {
		return nil, fmt.Errorf("%w: doc version 0", ErrCorruptValue)
	}
	out := make([]byte, docHeader, docHeader+len(mergeValue)+8*len(mergeValue)/4)
	out[0] = VersionDoc
	binary.BigEndian.PutUint64(out[1:], version)
	err := forEachMergeEntry(mergeValue, func(e *docEntry) {
		e.version = version
		out = appendEntry(out, e, true)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DocValue returns the fields value of a doc record: its live fields
// (false when there is none: the record reads as not found). The value is a
// new slice.
func DocValue(rec []byte) (value []byte, live bool, err error) {
	if len(rec) < docHeader {
		return nil, false, ErrCorruptValue
	}
	out := make([]byte, 1, len(rec))
	out[0] = fieldsFormat
	_, _, err = forEachDocEntry(rec, func(e *docEntry) {
		if !e.tomb {
			out = appendEntry(out, e, false)
		}
	})
	if err != nil {
		return nil, false, err
	}
	return out, len(out) > 1, nil
}

// RangeFields calls fn with each field of a fields value in name order,
// stopping at the first error. name and value alias v. It never allocates.
func RangeFields(v []byte, fn func(name, value []byte) error) error {
	if len(v) < 1 || v[0] != fieldsFormat {
		return ErrCorruptValue
	}
	return rangeEntries(v[1:], func(e docEntry) error {
		if e.tomb {
			return ErrCorruptValue
		}
		return fn(e.name, e.value)
	})
}

// rangeEntries calls fn for each unversioned entry of b, checking that the
// names ascend strictly, and stops at the first error.
func rangeEntries(b []byte, fn func(e docEntry) error) error {
	var prev []byte
	for first := true; len(b) > 0; first = false {
		var e docEntry
		var err error
		if e, b, err = readEntry(b, false); err != nil {
			return err
		}
		if !first && bytes.Compare(prev, e.name) >= 0 {
			return ErrCorruptValue
		}
		prev = e.name
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// DecodeFields returns the fields of a fields value (what KV.Get and scans
// return for a key written with Batch.MergeFields) in name order. The
// values alias v.
func DecodeFields(v []byte) ([]Field, error) {
	var out []Field
	err := RangeFields(v, func(name, value []byte) error {
		out = append(out, Field{Name: string(name), Value: value})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeFields returns the fields value of the live fields among fields
// (sorted by name, the last of equal names kept; deleted fields skipped).
func EncodeFields(fields []Field) []byte {
	out := []byte{fieldsFormat}
	for _, f := range sortFields(fields) {
		if !f.Deleted {
			out = appendEntry(out, &docEntry{name: []byte(f.Name), value: f.Value}, false)
		}
	}
	return out
}

// sortFields returns fields sorted by name, the last of equal names kept.
func sortFields(fields []Field) []Field {
	s := slices.Clone(fields)
	slices.SortStableFunc(s, func(a, b Field) int { return cmp.Compare(a.Name, b.Name) })
	out := s[:0]
	for i, f := range s {
		if i+1 < len(s) && s[i+1].Name == f.Name {
			continue
		}
		out = append(out, f)
	}
	return out
}

// MergeFields records a partial update of the fields doc at key: each
// field is set to its value, or deleted. Fields not named keep theirs, also
// when another coordinator updates them concurrently. Do not mix Set and
// MergeFields on one key; delete a whole doc with Delete. An empty fields
// list records nothing. A name longer than MaxFieldName (user input) makes
// the batch fail to commit with ErrCorruptValue.
func (b *Batch) MergeFields(key []byte, fields []Field) {
	if len(fields) == 0 {
		return
	}
	var v []byte
	for _, f := range sortFields(fields) {
		if len(f.Name) > MaxFieldName {
			v = nil // an empty update, which Apply and DocRecord reject
			break
		}
		v = appendEntry(v, &docEntry{name: []byte(f.Name), tomb: f.Deleted, value: f.Value}, false)
	}
	b.ops = append(b.ops, Op{Kind: OpMergeFields, Key: clone(key), Value: v})
}

// forEachMergeEntry validates an OpMergeFields value (at least one entry,
// names strictly ascending) and calls fn for each entry.
func forEachMergeEntry(v []byte, fn func(e *docEntry)) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: empty field update", ErrCorruptValue)
	}
	return rangeEntries(v, func(e docEntry) error {
		fn(&e)
		return nil
	})
}

// mergePlainFields applies an OpMergeFields value to the fields value cur
// (nil: none). It returns the new fields value, nil when no field is left.
func mergePlainFields(cur, update []byte) ([]byte, error) {
	var have []docEntry
	if cur != nil {
		err := RangeFields(cur, func(name, value []byte) error {
			have = append(have, docEntry{name: name, value: value})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var upd []docEntry
	if err := forEachMergeEntry(update, func(e *docEntry) { upd = append(upd, *e) }); err != nil {
		return nil, err
	}
	out := []byte{fieldsFormat}
	i, j := 0, 0
	for i < len(have) || j < len(upd) {
		var e *docEntry
		switch c := compareNext(have, upd, i, j); {
		case c < 0:
			e = &have[i]
			i++
		case c > 0:
			e = &upd[j]
			j++
		default:
			e = &upd[j]
			i, j = i+1, j+1
		}
		if !e.tomb {
			out = appendEntry(out, e, false)
		}
	}
	if len(out) == 1 {
		return nil, nil
	}
	return out, nil
}

// compareNext compares a[i] and b[j] by name; an exhausted side sorts last.
func compareNext(a, b []docEntry, i, j int) int {
	switch {
	case i == len(a):
		return 1
	case j == len(b):
		return -1
	}
	return bytes.Compare(a[i].name, b[j].name)
}

// docMerge accumulates doc operands of one key in the merger.
type docMerge struct {
	floor   uint64
	version uint64 // max of floor and every entry merged so far
	fields  map[string]docEntry
}

func newDocMerge() *docMerge { return &docMerge{fields: map[string]docEntry{}} }

func (d *docMerge) raiseFloor(v uint64) {
	d.floor = max(d.floor, v)
	d.version = max(d.version, v)
}

// add merges a doc record, which the merger owns (entries alias it).
func (d *docMerge) add(rec []byte) error {
	version, floor, err := forEachDocEntry(rec, func(e *docEntry) {
		if old, ok := d.fields[string(e.name)]; !ok || e.wins(&old) {
			d.fields[string(e.name)] = *e
		}
	})
	if err != nil {
		return err
	}
	d.raiseFloor(floor)
	d.version = max(d.version, version)
	return nil
}

// encode returns the canonical record: entries above the floor and not
// expired tombstones, sorted; the floor's tombstone when none is left.
func (d *docMerge) encode() []byte {
	live := make([]docEntry, 0, len(d.fields))
	size := docHeader
	for _, e := range d.fields {
		if e.version > d.floor && (!e.tomb || !expired(e.version, d.version)) {
			live = append(live, e)
			size += entrySize(&e)
		}
	}
	if len(live) == 0 {
		return EncodeVersioned(d.floor, true, nil)
	}
	slices.SortFunc(live, func(a, b docEntry) int { return bytes.Compare(a.name, b.name) })
	out := make([]byte, docHeader, size)
	out[0] = VersionDoc
	binary.BigEndian.PutUint64(out[1:], d.version)
	binary.BigEndian.PutUint64(out[versionHeader:], d.floor)
	for i := range live {
		out = appendEntry(out, &live[i], true)
	}
	return out
}
