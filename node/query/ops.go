package query

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// cond is a compiled condition over a whole document.
type cond interface {
	match(doc map[string]any) bool
	// pins reports the objectIds that every matching document must have (see Filter.ObjectIDs).
	pins() ([]string, bool)
	// member reports a client id that every matching document has in "m" (see Filter.Member).
	member() (string, bool)
}

// op is a compiled operator on one field value; present is false when the field is missing.
type op interface {
	test(v any, present bool) bool
}

// andCond holds when all its conditions hold.
type andCond []cond

func (a andCond) match(doc map[string]any) bool {
	for _, c := range a {
		if !c.match(doc) {
			return false
		}
	}
	return true
}

func (a andCond) pins() ([]string, bool) {
	var ids []string
	pinned := false
	for _, c := range a {
		cids, ok := c.pins()
		if !ok {
			continue
		}
		if pinned {
			ids = intersect(ids, cids)
		} else {
			ids, pinned = cids, true
		}
	}
	return ids, pinned
}

func (a andCond) member() (string, bool) {
	for _, c := range a {
		if id, ok := c.member(); ok {
			return id, true
		}
	}
	return "", false
}

// orCond holds when any of its conditions holds; nor negates it.
type orCond struct {
	conds []cond
	nor   bool
}

func (o orCond) match(doc map[string]any) bool {
	for _, c := range o.conds {
		if c.match(doc) {
			return !o.nor
		}
	}
	return o.nor
}

func (o orCond) pins() ([]string, bool) {
	if o.nor {
		return nil, false
	}
	var ids []string
	for _, c := range o.conds {
		cids, ok := c.pins()
		if !ok {
			return nil, false
		}
		ids = union(ids, cids)
	}
	return ids, true
}

func (o orCond) member() (string, bool) { return "", false }

// fieldCond holds when every operator holds on the value at path.
type fieldCond struct {
	key  string
	path []string
	ops  []op
}

func (f fieldCond) match(doc map[string]any) bool {
	v, present := lookup(doc, f.path)
	for _, o := range f.ops {
		if !o.test(v, present) {
			return false
		}
	}
	return true
}

func (f fieldCond) pins() ([]string, bool) {
	if f.key != "objectId" {
		return nil, false
	}
	var ids []string
	pinned := false
	for _, o := range f.ops {
		oids, ok := opStrings(o)
		if !ok {
			continue
		}
		if pinned {
			ids = intersect(ids, oids)
		} else {
			ids, pinned = oids, true
		}
	}
	return ids, pinned
}

func (f fieldCond) member() (string, bool) {
	if f.key != "m" {
		return "", false
	}
	for _, o := range f.ops {
		if ids, ok := opStrings(o); ok && len(ids) == 1 {
			return ids[0], true
		}
		if all, ok := o.(allOp); ok && len(all.vals) > 0 {
			if id, ok := all.vals[0].v.(string); ok {
				return id, true
			}
		}
	}
	return "", false
}

// opStrings returns the string values a field must equal under an equality or $in operator.
func opStrings(o op) ([]string, bool) {
	switch o := o.(type) {
	case eqOp:
		if s, ok := o.lit.v.(string); ok && !o.lit.date {
			return []string{s}, true
		}
	case inOp:
		if len(o.set.other) == 0 {
			return append([]string{}, o.set.order...), true
		}
	}
	return nil, false
}

// operand is a literal from the where document. Date objects are parsed once at compile time.
type operand struct {
	v    any
	t    time.Time
	date bool
}

// equals reports whether the document value x equals the operand.
func (o operand) equals(x any) bool {
	if o.date {
		t, ok := asTime(x)
		return ok && t.Equal(o.t)
	}
	return deepEqual(x, o.v)
}

// eqMatch is literal equality: a missing field equals null, an array field matches if it equals
// the literal or has an element equal to it.
func eqMatch(v any, present bool, lit operand) bool {
	if !present {
		return lit.v == nil
	}
	if lit.equals(v) {
		return true
	}
	arr, ok := asArray(v)
	if !ok {
		return false
	}
	return slices.ContainsFunc(arr, lit.equals)
}

// eqOp is a literal or $eq.
type eqOp struct{ lit operand }

func (o eqOp) test(v any, present bool) bool { return eqMatch(v, present, o.lit) }

// notOp negates an operator ($ne, $nin).
type notOp struct{ inner op }

func (o notOp) test(v any, present bool) bool { return !o.inner.test(v, present) }

// cmpOp is $lt, $lte, $gt or $gte: want reports whether a comparison result satisfies it.
type cmpOp struct {
	lit  operand
	want func(c int) bool
}

func (o cmpOp) test(v any, present bool) bool {
	if !present {
		return false
	}
	if o.one(v) {
		return true
	}
	arr, ok := asArray(v)
	if !ok {
		return false
	}
	return slices.ContainsFunc(arr, o.one)
}

// one compares a single value; mixed types never satisfy the operator.
func (o cmpOp) one(x any) bool {
	if o.lit.date {
		t, ok := asTime(x)
		return ok && o.want(t.Compare(o.lit.t))
	}
	switch lv := o.lit.v.(type) {
	case float64:
		f, ok := toFloat(x)
		return ok && o.want(cmp.Compare(f, lv))
	case string:
		s, ok := x.(string)
		return ok && o.want(strings.Compare(s, lv))
	}
	return false
}

// valueSet is the operand list of $in/$nin. Strings go into a map so that large id lists cost
// O(1) per document value; other literals are compared one by one.
type valueSet struct {
	strs  map[string]struct{}
	order []string // distinct strings in first-seen order, for ObjectIDs
	other []operand
}

func (s *valueSet) add(o operand) {
	str, ok := o.v.(string)
	if !ok || o.date {
		s.other = append(s.other, o)
		return
	}
	if _, dup := s.strs[str]; dup {
		return
	}
	s.strs[str] = struct{}{}
	s.order = append(s.order, str)
}

func (s *valueSet) contains(x any) bool {
	if str, ok := x.(string); ok {
		if _, ok := s.strs[str]; ok {
			return true
		}
	}
	for _, o := range s.other {
		if o.equals(x) {
			return true
		}
	}
	return false
}

// inOp is $in: the value, or any element of an array value, is in the set. A missing field is
// in the set when it contains null.
type inOp struct{ set *valueSet }

func (o inOp) test(v any, present bool) bool {
	if !present {
		return o.set.contains(nil)
	}
	if o.set.contains(v) {
		return true
	}
	arr, ok := asArray(v)
	if !ok {
		return false
	}
	return slices.ContainsFunc(arr, o.set.contains)
}

// allOp is $all: every literal is equal to the value or contained in it. An empty list matches
// any array. String elements of an array value are indexed once per test, so a long list against
// a large member array costs O(len(list)+len(array)), not their product.
type allOp struct{ vals []operand }

func (o allOp) test(v any, present bool) bool {
	arr, isArr := asArray(v)
	if len(o.vals) == 0 {
		return present && isArr
	}
	var strs map[string]struct{}
	if isArr && len(o.vals) > 1 {
		strs = make(map[string]struct{}, len(arr))
		for _, e := range arr {
			if s, ok := e.(string); ok {
				strs[s] = struct{}{}
			}
		}
	}
	for _, lit := range o.vals {
		if s, ok := lit.v.(string); ok && strs != nil {
			if _, in := strs[s]; in {
				continue
			}
		}
		if !eqMatch(v, present, lit) {
			return false
		}
	}
	return true
}

// sizeOp is $size.
type sizeOp struct{ n int }

func (o sizeOp) test(v any, present bool) bool {
	arr, ok := asArray(v)
	return present && ok && len(arr) == o.n
}

// existsOp is $exists.
type existsOp struct{ want bool }

func (o existsOp) test(_ any, present bool) bool { return present == o.want }

// matcher is a compiled regular expression (a *regexp.Regexp or a rewritten idiom).
type matcher interface {
	MatchString(s string) bool
}

// regexOp is $regex: a string value, or any string element of an array value, matches.
type regexOp struct{ re matcher }

func (o regexOp) test(v any, present bool) bool {
	if !present {
		return false
	}
	if s, ok := v.(string); ok {
		return o.re.MatchString(s)
	}
	arr, ok := asArray(v)
	if !ok {
		return false
	}
	for _, e := range arr {
		if s, ok := e.(string); ok && o.re.MatchString(s) {
			return true
		}
	}
	return false
}

// intersect returns the elements of a that are also in b, in a's order.
func intersect(a, b []string) []string {
	in := make(map[string]struct{}, len(b))
	for _, s := range b {
		in[s] = struct{}{}
	}
	out := []string{}
	for _, s := range a {
		if _, ok := in[s]; ok {
			out = append(out, s)
		}
	}
	return out
}

// union returns a followed by the elements of b not in a.
func union(a, b []string) []string {
	seen := make(map[string]struct{}, len(a)+len(b))
	out := make([]string, 0, len(a)+len(b))
	for _, list := range [][]string{a, b} {
		for _, s := range list {
			if _, dup := seen[s]; !dup {
				seen[s] = struct{}{}
				out = append(out, s)
			}
		}
	}
	return out
}
