package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error from Parse and ParseSort: the where document or sort spec
// is malformed, uses an unsupported operator or exceeds a work bound.
var ErrInvalid = errors.New("query: invalid")

// Work bounds for one where document. They keep a hostile query from costing more than a few
// milliseconds to compile or more than a bounded number of comparisons per document.
const (
	// MaxDepth is the deepest nesting of $and/$or/$nor. Real SDK queries nest one or two levels.
	MaxDepth = 16
	// MaxConditions caps the number of compiled conditions (one per operator or literal, plus one
	// per $and/$or/$nor), bounding the evaluation cost of Match.
	MaxConditions = 512
	// MaxListElems caps the total number of elements in $in/$nin/$all lists. The JS SDK resolves
	// up to 999 ids in one $in, so one such list must fit several times over.
	MaxListElems = 10000
	// MaxRegexLen caps the length in bytes of one $regex source.
	MaxRegexLen = 1024
	// MaxRegexProgram caps the compiled size (RE2 instructions) of all $regex patterns of one
	// where document together. Matching costs up to the text length times the program size per
	// document: ten 1 KB patterns in an $or took 39 s over 20k conversations. The SDKs'
	// contains/startsWith/endsWith of a 100-character string compile to about 100 instructions.
	MaxRegexProgram = 2000
)

// Filter is a compiled where document. It is immutable after Parse, so all methods are safe for
// concurrent use.
type Filter struct {
	root cond // nil when empty
}

// Parse compiles a where document, which must be a JSON object. nil, blank input and "{}" give a
// Filter for which Empty reports true and which matches every document; the caller applies the
// default rule. Every error wraps ErrInvalid and says what is wrong.
func Parse(where []byte) (*Filter, error) {
	if len(bytes.TrimSpace(where)) == 0 {
		return &Filter{}, nil
	}
	var v any
	if err := json.Unmarshal(where, &v); err != nil {
		return nil, invalidf("where is not valid JSON: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalidf("where must be a JSON object, got %s", typeName(v))
	}
	if len(m) == 0 {
		return &Filter{}, nil
	}
	var c compiler
	root, err := c.object(m, 0)
	if err != nil {
		return nil, err
	}
	return &Filter{root: root}, nil
}

// Empty reports whether the filter has no condition (nil, blank or "{}" where).
func (f *Filter) Empty() bool { return f.root == nil }

// Match reports whether doc satisfies the filter. An empty filter matches everything. Match does
// not modify or retain doc.
func (f *Filter) Match(doc map[string]any) bool {
	if f.root == nil {
		return true
	}
	return f.root.match(doc)
}

// ObjectIDs reports the objectId values the filter pins: every document that matches has its
// objectId among ids. It looks at top-level objectId equality and $in, intersects across $and and
// unions across $or. ok is false when the filter does not pin objectId. ids may be empty (nothing
// can match). The caller still applies Match to the looked-up documents. The returned slice is
// freshly allocated and owned by the caller.
func (f *Filter) ObjectIDs() (ids []string, ok bool) {
	if f.root == nil {
		return nil, false
	}
	return f.root.pins()
}

// Member reports a client id that every matching document has in its "m" column, when the filter
// requires one at the top level (literal or $eq, a one-element $in, or $all), possibly inside a
// top-level $and. It is an index hint: the caller still applies Match.
func (f *Filter) Member() (id string, ok bool) {
	if f.root == nil {
		return "", false
	}
	return f.root.member()
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// typeName names the JSON type of v for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
