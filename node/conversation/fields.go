package conversation

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/imcluster/imcluster/node/store"
)

// Stored layout of a conversation record (FamConv) and a client state
// (FamClientState): store field docs, one field per scalar, per member id
// of each member set, per custom column and per role, so that updates of
// different fields or members made by two coordinators at once (while
// coordination moves) both survive the replicas' merge. Integers are
// varints, a column its JSON value, a set member an empty value. A zero
// scalar, an empty set and a missing column have no field.
//
// Field names are disk format: never rename one.
const (
	fieldID        = "id"
	fieldCreator   = "c"
	fieldKind      = "k"
	fieldUnique    = "u"
	fieldUniqueID  = "uid"
	fieldCreated   = "ca"
	fieldUpdated   = "ua"
	fieldTTL       = "ttl"
	fieldExpire    = "exp"
	fieldLastPatch = "lpt"

	prefixMember   = "m/"
	prefixMuted    = "mu/"
	prefixSilenced = "sh/"
	prefixBlocked  = "bl/"
	prefixColumn   = "col/"
	prefixRole     = "role/"
	// prefixTempSilenced holds a temporary silence: the client id in the
	// name, the end (ms) as a varint.
	prefixTempSilenced = "tsh/"

	fieldReadTs  = "rt"
	fieldReadAt  = "ra"
	fieldAckTs   = "at"
	fieldAckAt   = "aa"
	fieldChanged = "ch"
)

// errBadField reports a stored field that does not decode.
var errBadField = errors.New("conversation: bad stored field")

// fieldList builds a record's fields.
type fieldList []store.Field

func (l *fieldList) str(name, v string) {
	if v != "" {
		*l = append(*l, store.Field{Name: name, Value: []byte(v)})
	}
}

func (l *fieldList) int(name string, v int64) {
	if v != 0 {
		*l = append(*l, store.Field{Name: name, Value: binary.AppendVarint(nil, v)})
	}
}

func (l *fieldList) set(prefix string, ids []string) {
	for _, id := range ids {
		*l = append(*l, store.Field{Name: prefix + id})
	}
}

// sorted returns the list sorted by name (names are unique).
func (l fieldList) sorted() []store.Field {
	slices.SortFunc(l, func(a, b store.Field) int { return strings.Compare(a.Name, b.Name) })
	return l
}

// fields returns the record's fields sorted by name.
func (r *convRecord) fields() []store.Field {
	l := make(fieldList, 0, 12+len(r.Members)+len(r.Muted)+len(r.Silenced)+len(r.Blocked)+len(r.Columns)+len(r.Roles))
	l.str(fieldID, r.ID)
	l.str(fieldCreator, r.Creator)
	l.int(fieldKind, int64(r.Kind))
	if r.Unique {
		l.int(fieldUnique, 1)
	}
	l.str(fieldUniqueID, r.UniqueID)
	l.int(fieldCreated, r.Created)
	l.int(fieldUpdated, r.Updated)
	l.int(fieldTTL, int64(r.TTL))
	l.int(fieldExpire, r.Expire)
	l.int(fieldLastPatch, r.LastPatch)
	l.set(prefixMember, r.Members)
	l.set(prefixMuted, r.Muted)
	l.set(prefixSilenced, r.Silenced)
	l.set(prefixBlocked, r.Blocked)
	for name, v := range r.Columns {
		j, err := json.Marshal(v)
		if err != nil {
			panic("conversation: marshal column: " + err.Error()) // only plain JSON types inside
		}
		l = append(l, store.Field{Name: prefixColumn + name, Value: j})
	}
	for id, role := range r.Roles {
		l = append(l, store.Field{Name: prefixRole + id, Value: []byte(role)})
	}
	for id, until := range r.TempSilenced {
		l = append(l, store.Field{Name: prefixTempSilenced + id, Value: binary.AppendVarint(nil, until)})
	}
	return l.sorted()
}

// decodeConv decodes a stored conversation: a fields value, or a record
// stored as one JSON object before conversations were field docs. It keeps
// no reference to v.
func decodeConv(v []byte) (*convRecord, error) {
	var r convRecord
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, err
		}
		r.orderIndexed, r.indexedUpdated = true, r.Updated
		return &r, nil
	}
	err := store.RangeFields(v, func(name, value []byte) error {
		switch string(name) {
		case fieldID:
			r.ID = string(value)
		case fieldCreator:
			r.Creator = string(value)
		case fieldKind:
			return decodeInt(value, &r.Kind)
		case fieldUnique:
			r.Unique = true
		case fieldUniqueID:
			r.UniqueID = string(value)
		case fieldCreated:
			return decodeInt(value, &r.Created)
		case fieldUpdated:
			return decodeInt(value, &r.Updated)
		case fieldTTL:
			return decodeInt(value, &r.TTL)
		case fieldExpire:
			return decodeInt(value, &r.Expire)
		case fieldLastPatch:
			return decodeInt(value, &r.LastPatch)
		default:
			return r.decodeNamed(name, value)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.orderIndexed, r.indexedUpdated = true, r.Updated
	return &r, nil
}

// decodeNamed decodes a set member, column or role field. Names arrive
// sorted, so each set is built sorted.
func (r *convRecord) decodeNamed(name, value []byte) error {
	switch {
	case bytes.HasPrefix(name, []byte(prefixMember)):
		r.Members = append(r.Members, string(name[len(prefixMember):]))
	case bytes.HasPrefix(name, []byte(prefixMuted)):
		r.Muted = append(r.Muted, string(name[len(prefixMuted):]))
	case bytes.HasPrefix(name, []byte(prefixSilenced)):
		r.Silenced = append(r.Silenced, string(name[len(prefixSilenced):]))
	case bytes.HasPrefix(name, []byte(prefixBlocked)):
		r.Blocked = append(r.Blocked, string(name[len(prefixBlocked):]))
	case bytes.HasPrefix(name, []byte(prefixColumn)):
		var v any
		if err := json.Unmarshal(value, &v); err != nil {
			return err
		}
		if r.Columns == nil {
			r.Columns = map[string]any{}
		}
		r.Columns[string(name[len(prefixColumn):])] = v
	case bytes.HasPrefix(name, []byte(prefixRole)):
		if r.Roles == nil {
			r.Roles = map[string]string{}
		}
		r.Roles[string(name[len(prefixRole):])] = string(value)
	case bytes.HasPrefix(name, []byte(prefixTempSilenced)):
		var until int64
		if err := decodeInt(value, &until); err != nil {
			return err
		}
		if r.TempSilenced == nil {
			r.TempSilenced = map[string]int64{}
		}
		r.TempSilenced[string(name[len(prefixTempSilenced):])] = until
	}
	// Unknown fields (from a newer version) are skipped.
	return nil
}

func decodeInt[T int | int32 | int64](value []byte, out *T) error {
	v, n := binary.Varint(value)
	if n <= 0 || n != len(value) {
		return errBadField
	}
	*out = T(v)
	return nil
}

// fields returns the state's fields sorted by name.
func (s *clientState) fields() []store.Field {
	var l fieldList
	l.int(fieldReadTs, s.ReadTs)
	l.int(fieldReadAt, s.ReadAt)
	l.int(fieldAckTs, s.AckTs)
	l.int(fieldAckAt, s.AckAt)
	l.int(fieldChanged, s.Changed)
	return l.sorted()
}

// clientStateFields lists every field of a client state, sorted.
var clientStateFields = []string{fieldAckAt, fieldAckTs, fieldChanged, fieldReadAt, fieldReadTs}

// values returns the state's values in clientStateFields order.
func (s *clientState) values() [5]int64 {
	return [5]int64{s.AckAt, s.AckTs, s.Changed, s.ReadAt, s.ReadTs}
}

// changedSinceBase returns the fields whose values differ from s.base,
// sorted: a value now zero is a deletion (a zero value has no field).
func (s *clientState) changedSinceBase() []store.Field {
	var out []store.Field
	for i, v := range s.values() {
		if v == s.base[i] {
			continue
		}
		if v == 0 {
			out = append(out, store.Field{Name: clientStateFields[i], Deleted: true})
		} else {
			out = append(out, store.Field{Name: clientStateFields[i], Value: binary.AppendVarint(nil, v)})
		}
	}
	return out
}

// decodeClientState decodes a stored client state: a fields value or a
// legacy JSON object.
func decodeClientState(v []byte) (clientState, error) {
	var s clientState
	if len(v) > 0 && v[0] == '{' {
		err := json.Unmarshal(v, &s)
		return s, err
	}
	err := store.RangeFields(v, func(name, value []byte) error {
		switch string(name) {
		case fieldReadTs:
			return decodeInt(value, &s.ReadTs)
		case fieldReadAt:
			return decodeInt(value, &s.ReadAt)
		case fieldAckTs:
			return decodeInt(value, &s.AckTs)
		case fieldAckAt:
			return decodeInt(value, &s.AckAt)
		case fieldChanged:
			return decodeInt(value, &s.Changed)
		}
		return nil
	})
	return s, err
}

// isConvField reports whether name is a field this version writes for a
// conversation (others, from a newer version, are left alone).
func isConvField(name []byte) bool {
	switch string(name) {
	case fieldID, fieldCreator, fieldKind, fieldUnique, fieldUniqueID, fieldCreated, fieldUpdated, fieldTTL, fieldExpire,
		fieldLastPatch:
		return true
	}
	for _, p := range []string{prefixMember, prefixMuted, prefixSilenced, prefixBlocked, prefixColumn, prefixRole, prefixTempSilenced} {
		if bytes.HasPrefix(name, []byte(p)) {
			return true
		}
	}
	return false
}

// isClientStateField reports whether name is a client state field.
func isClientStateField(name []byte) bool {
	_, ok := slices.BinarySearch(clientStateFields, string(name))
	return ok
}

// changedFields returns what to write for a record whose fields are now
// cur (sorted) and were stored (a fields value; nil when the record was
// not loaded from one: then every field is written): the fields whose
// value changed, and a deletion for each stored field that is gone and
// known (written by this version).
func changedFields(stored []byte, cur []store.Field, known func(name []byte) bool) []store.Field {
	if stored == nil {
		return cur
	}
	var out []store.Field
	i := 0
	err := store.RangeFields(stored, func(name, value []byte) error {
		for i < len(cur) && cur[i].Name < string(name) {
			out = append(out, cur[i])
			i++
		}
		if i < len(cur) && cur[i].Name == string(name) {
			if !bytes.Equal(cur[i].Value, value) {
				out = append(out, cur[i])
			}
			i++
			return nil
		}
		if known(name) {
			out = append(out, store.Field{Name: string(name), Deleted: true})
		}
		return nil
	})
	if err != nil {
		return cur // stored was decoded before; cannot happen
	}
	return append(out, cur[i:]...)
}
