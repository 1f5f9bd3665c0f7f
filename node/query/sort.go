package query

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// MaxSortKeys caps the number of keys in a sort spec; SDKs send one to four.
const MaxSortKeys = 16

// Sort is a compiled sort spec. The zero Sort orders by objectId only. A Sort is immutable, so it
// is safe for concurrent use.
type Sort struct {
	keys []sortKey
}

type sortKey struct {
	path []string
	desc bool
}

// ParseSort compiles a comma-separated sort spec such as "-lm" or "name,-createdAt": each key is a
// column name or dot path, a "-" prefix sorts it descending. Spaces around keys are ignored. An
// empty spec gives the zero Sort; the caller applies the default "-lm". Errors wrap ErrInvalid.
func ParseSort(spec string) (Sort, error) {
	if strings.TrimSpace(spec) == "" {
		return Sort{}, nil
	}
	parts := strings.Split(spec, ",")
	if len(parts) > MaxSortKeys {
		return Sort{}, invalidf("sort has more than %d keys", MaxSortKeys)
	}
	keys := make([]sortKey, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		name, desc := strings.CutPrefix(p, "-")
		path := strings.Split(name, ".")
		if slices.Contains(path, "") {
			return Sort{}, invalidf("invalid sort key %q in %q", p, spec)
		}
		keys = append(keys, sortKey{path: path, desc: desc})
	}
	return Sort{keys: keys}, nil
}

// Empty reports whether the spec had no keys.
func (s Sort) Empty() bool { return len(s.keys) == 0 }

// Single returns the column of a spec of one top-level key and whether it
// sorts descending; ok is false for any other spec. An order index of that
// column serves such a sort (the ties are broken by objectId).
func (s Sort) Single() (column string, desc, ok bool) {
	if len(s.keys) != 1 || len(s.keys[0].path) != 1 {
		return "", false, false
	}
	return s.keys[0].path[0], s.keys[0].desc, true
}

var objectIDPath = []string{"objectId"}

// Compare returns -1, 0 or +1 as a sorts before, equal to or after b. It is a total order: after
// the sort keys, ties are broken by objectId ascending. See the package doc for the type rank.
func (s Sort) Compare(a, b map[string]any) int {
	for _, k := range s.keys {
		va, pa := lookup(a, k.path)
		vb, pb := lookup(b, k.path)
		c := compareValues(classify(va, pa), classify(vb, pb))
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	va, pa := lookup(a, objectIDPath)
	vb, pb := lookup(b, objectIDPath)
	return compareValues(classify(va, pa), classify(vb, pb))
}

// Type ranks for sorting values of different types.
const (
	rankMissing = iota
	rankNull
	rankNumber
	rankString
	rankDate
	rankBool
	rankObject
	rankArray
)

// sortValue is a value reduced to its rank and comparable payload.
type sortValue struct {
	rank int
	num  float64
	str  string // string value, or canonical JSON for objects and arrays
	t    time.Time
	b    bool
}

func classify(v any, present bool) sortValue {
	if !present {
		return sortValue{rank: rankMissing}
	}
	if v == nil {
		return sortValue{rank: rankNull}
	}
	if t, ok := asTime(v); ok {
		return sortValue{rank: rankDate, t: t}
	}
	if f, ok := toFloat(v); ok {
		return sortValue{rank: rankNumber, num: f}
	}
	switch x := v.(type) {
	case string:
		return sortValue{rank: rankString, str: x}
	case bool:
		return sortValue{rank: rankBool, b: x}
	}
	rank := rankObject
	if _, ok := asArray(v); ok {
		rank = rankArray
	}
	buf, _ := json.Marshal(v) // an unmarshalable value compares as empty
	return sortValue{rank: rank, str: string(bytes.TrimSpace(buf))}
}

func compareValues(a, b sortValue) int {
	if c := cmp.Compare(a.rank, b.rank); c != 0 {
		return c
	}
	switch a.rank {
	case rankNumber:
		return cmp.Compare(a.num, b.num)
	case rankDate:
		return a.t.Compare(b.t)
	case rankBool:
		switch {
		case a.b == b.b:
			return 0
		case b.b:
			return -1
		}
		return 1
	}
	return strings.Compare(a.str, b.str)
}
