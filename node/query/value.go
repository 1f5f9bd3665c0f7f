package query

import (
	"encoding/json"
	"strconv"
	"time"
)

// lookup resolves a dot path in doc. A segment indexes into an object by key, or into an array by
// a decimal index. present is false when any segment is missing.
func lookup(doc map[string]any, path []string) (v any, present bool) {
	var cur any = doc
	for _, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, ok := arrayIndex(seg, len(c))
			if !ok {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// arrayIndex parses seg as an index into an array of length n.
func arrayIndex(seg string, n int) (int, bool) {
	if seg == "" || seg[0] < '0' || seg[0] > '9' {
		return 0, false
	}
	i, err := strconv.Atoi(seg)
	if err != nil || i >= n {
		return 0, false
	}
	return i, true
}

// asArray returns v as a slice of values when it is a JSON array. []string is accepted too, for
// callers that build documents by hand.
func asArray(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []string:
		out := make([]any, len(a))
		for i, s := range a {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

// toFloat returns v as a float64 when it is a number. Booleans are not numbers.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// asTime returns the instant of a date value: a LeanCloud date object {"__type":"Date","iso":..}
// or a string that parses as RFC 3339 (createdAt, updatedAt).
func asTime(v any) (time.Time, bool) {
	switch d := v.(type) {
	case string:
		return parseTime(d)
	case map[string]any:
		if !isDateObject(d) {
			return time.Time{}, false
		}
		iso, _ := d["iso"].(string)
		return parseTime(iso)
	}
	return time.Time{}, false
}

// isDateObject reports whether m is tagged {"__type":"Date"}.
func isDateObject(m map[string]any) bool {
	t, _ := m["__type"].(string)
	return t == "Date"
}

// parseTime parses an RFC 3339 timestamp with optional fractional seconds. The cheap shape check
// keeps ordinary strings (names, ids) from paying for time.Parse.
func parseTime(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// deepEqual compares a document value a with a literal b decoded from JSON. Numbers compare by
// value, objects by keys and values, arrays element-wise.
func deepEqual(a, b any) bool {
	switch bv := b.(type) {
	case nil:
		return a == nil
	case bool:
		av, ok := a.(bool)
		return ok && av == bv
	case string:
		av, ok := a.(string)
		return ok && av == bv
	case float64:
		av, ok := toFloat(a)
		return ok && av == bv
	case []any:
		return arraysEqual(a, bv)
	case map[string]any:
		return objectsEqual(a, bv)
	}
	return false
}

func arraysEqual(a any, b []any) bool {
	aa, ok := asArray(a)
	if !ok || len(aa) != len(b) {
		return false
	}
	for i := range b {
		if !deepEqual(aa[i], b[i]) {
			return false
		}
	}
	return true
}

func objectsEqual(a any, b map[string]any) bool {
	am, ok := a.(map[string]any)
	if !ok || len(am) != len(b) {
		return false
	}
	for k, bv := range b {
		av, ok := am[k]
		if !ok || !deepEqual(av, bv) {
			return false
		}
	}
	return true
}
