package query

import (
	"math"
	"slices"
	"strings"
)

// compiler turns a decoded where document into conditions and counts the work bounds. It is used
// for one Parse call only.
type compiler struct {
	conds int // compiled conditions so far, against MaxConditions
	elems int // list elements so far, against MaxListElems
	insts int // compiled regex instructions so far, against MaxRegexProgram
}

// count charges n conditions against MaxConditions.
func (c *compiler) count(n int) error {
	c.conds += n
	if c.conds > MaxConditions {
		return invalidf("where has more than %d conditions", MaxConditions)
	}
	return nil
}

// object compiles a where object: its keys are ANDed. Keys are visited in sorted order so the
// reported error does not depend on map iteration order.
func (c *compiler) object(m map[string]any, depth int) (cond, error) {
	if depth > MaxDepth {
		return nil, invalidf("where nests deeper than %d levels", MaxDepth)
	}
	conds := make(andCond, 0, len(m))
	for _, k := range sortedKeys(m) {
		var cd cond
		var err error
		switch {
		case k == "$and" || k == "$or" || k == "$nor":
			cd, err = c.logical(k, m[k], depth)
		case strings.HasPrefix(k, "$"):
			err = invalidf("unsupported operator %q", k)
		default:
			cd, err = c.field(k, m[k])
		}
		if err != nil {
			return nil, err
		}
		conds = append(conds, cd)
	}
	if len(conds) == 1 {
		return conds[0], nil
	}
	return conds, nil
}

// logical compiles $and, $or and $nor: a non-empty array of where objects.
func (c *compiler) logical(name string, v any, depth int) (cond, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, invalidf("%s must be a non-empty array of objects, got %s", name, typeName(v))
	}
	if err := c.count(1); err != nil {
		return nil, err
	}
	conds := make([]cond, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, invalidf("%s[%d] must be an object, got %s", name, i, typeName(e))
		}
		cd, err := c.object(m, depth+1)
		if err != nil {
			return nil, err
		}
		conds = append(conds, cd)
	}
	if name == "$and" {
		return andCond(conds), nil
	}
	return orCond{conds: conds, nor: name == "$nor"}, nil
}

// field compiles the condition on one key: a literal or an object of operators.
func (c *compiler) field(key string, v any) (cond, error) {
	path := strings.Split(key, ".")
	if slices.Contains(path, "") {
		return nil, invalidf("invalid key %q", key)
	}
	fc := fieldCond{key: key, path: path}
	m, isObj := v.(map[string]any)
	if !isObj || !hasOperators(m) {
		lit, err := newOperand(key, v)
		if err != nil {
			return nil, err
		}
		fc.ops = []op{eqOp{lit: lit}}
		return fc, c.count(1)
	}
	ops, err := c.operators(key, m)
	if err != nil {
		return nil, err
	}
	fc.ops = ops
	return fc, nil
}

// hasOperators reports whether an object value is an operator object (any key starts with "$")
// rather than an object literal.
func hasOperators(m map[string]any) bool {
	for k := range m {
		if strings.HasPrefix(k, "$") {
			return true
		}
	}
	return false
}

// operators compiles an operator object; all its operators must hold.
func (c *compiler) operators(key string, m map[string]any) ([]op, error) {
	ops := make([]op, 0, len(m))
	for _, name := range sortedKeys(m) {
		if name == "$options" {
			continue // consumed by $regex
		}
		o, err := c.operator(key, name, m)
		if err != nil {
			return nil, err
		}
		if err := c.count(1); err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	if _, ok := m["$options"]; ok {
		if _, ok := m["$regex"]; !ok {
			return nil, invalidf("$options without $regex on key %q", key)
		}
	}
	return ops, nil
}

// operator compiles one operator of an operator object m on key.
func (c *compiler) operator(key, name string, m map[string]any) (op, error) {
	v := m[name]
	switch name {
	case "$eq", "$ne":
		lit, err := newOperand(key, v)
		if err != nil {
			return nil, err
		}
		if name == "$ne" {
			return notOp{eqOp{lit: lit}}, nil
		}
		return eqOp{lit: lit}, nil
	case "$lt", "$lte", "$gt", "$gte":
		return compileCmp(key, name, v)
	case "$in", "$nin":
		return c.compileIn(key, name, v)
	case "$all":
		vals, err := c.list(key, name, v)
		return allOp{vals: vals}, err
	case "$size":
		return compileSize(key, v)
	case "$exists":
		b, ok := v.(bool)
		if !ok {
			return nil, invalidf("$exists on key %q must be a boolean, got %s", key, typeName(v))
		}
		return existsOp{want: b}, nil
	case "$regex":
		return c.compileRegexOp(key, v, m["$options"])
	}
	if strings.HasPrefix(name, "$") {
		return nil, invalidf("unsupported operator %q on key %q", name, key)
	}
	return nil, invalidf("key %q mixes operators with field %q", key, name)
}

// compileCmp compiles $lt/$lte/$gt/$gte, whose operand must be a number, string or date.
func compileCmp(key, name string, v any) (op, error) {
	lit, err := newOperand(key, v)
	if err != nil {
		return nil, err
	}
	switch v.(type) {
	case float64, string:
	default:
		if !lit.date {
			return nil, invalidf("%s on key %q needs a number, string or date, got %s", name, key, typeName(v))
		}
	}
	want := map[string]func(int) bool{
		"$lt":  func(c int) bool { return c < 0 },
		"$lte": func(c int) bool { return c <= 0 },
		"$gt":  func(c int) bool { return c > 0 },
		"$gte": func(c int) bool { return c >= 0 },
	}[name]
	return cmpOp{lit: lit, want: want}, nil
}

// compileIn compiles $in and $nin.
func (c *compiler) compileIn(key, name string, v any) (op, error) {
	vals, err := c.list(key, name, v)
	if err != nil {
		return nil, err
	}
	set := &valueSet{strs: make(map[string]struct{}, len(vals))}
	for _, o := range vals {
		set.add(o)
	}
	if name == "$nin" {
		return notOp{inOp{set: set}}, nil
	}
	return inOp{set: set}, nil
}

// list decodes the array operand of $in, $nin and $all and charges its length to MaxListElems.
func (c *compiler) list(key, name string, v any) ([]operand, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, invalidf("%s on key %q must be an array, got %s", name, key, typeName(v))
	}
	c.elems += len(arr)
	if c.elems > MaxListElems {
		return nil, invalidf("where lists have more than %d elements in total", MaxListElems)
	}
	out := make([]operand, 0, len(arr))
	for _, e := range arr {
		o, err := newOperand(key, e)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// compileSize compiles $size, whose operand must be a non-negative integer.
func compileSize(key string, v any) (op, error) {
	f, ok := v.(float64)
	if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		return nil, invalidf("$size on key %q must be a non-negative integer, got %v", key, v)
	}
	return sizeOp{n: int(f)}, nil
}

// compileRegexOp compiles $regex with its optional $options.
func (c *compiler) compileRegexOp(key string, src, opts any) (op, error) {
	s, ok := src.(string)
	if !ok {
		return nil, invalidf("$regex on key %q must be a string, got %s", key, typeName(src))
	}
	o := ""
	if opts != nil {
		if o, ok = opts.(string); !ok {
			return nil, invalidf("$options on key %q must be a string, got %s", key, typeName(opts))
		}
	}
	re, err := compileRegex(key, s, o)
	if err != nil {
		return nil, err
	}
	n, err := regexProgramSize(s, o)
	if err != nil {
		return nil, invalidf("$regex %q on key %q: %v", s, key, err)
	}
	if c.insts += n; c.insts > MaxRegexProgram {
		return nil, invalidf("the $regex patterns of where compile to more than %d instructions", MaxRegexProgram)
	}
	return regexOp{re: re}, nil
}

// newOperand decodes a literal. A {"__type":"Date"} object must carry a valid "iso" timestamp.
func newOperand(key string, v any) (operand, error) {
	m, ok := v.(map[string]any)
	if !ok || !isDateObject(m) {
		return operand{v: v}, nil
	}
	iso, _ := m["iso"].(string)
	t, ok := parseTime(iso)
	if !ok {
		return operand{}, invalidf("bad date %q on key %q (want RFC 3339)", iso, key)
	}
	return operand{v: v, t: t, date: true}, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
