package query

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// jsQuote mirrors the JS SDK's ConversationQuery._quote used by contains/startsWith/endsWith.
func jsQuote(s string) string {
	return `\Q` + strings.ReplaceAll(s, `\E`, `\E\\E\Q`) + `\E`
}

func TestQueryRegex(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts string
		in   string
		want bool
	}{
		// contains / startsWith / endsWith as the SDKs send them.
		{"contains", jsQuote("教育"), "", "Tom & Jerry 教育群", true},
		{"contains keywords", jsQuote("教育"), "", "儿童教育", true},
		{"contains not", jsQuote("教育"), "", "Tom & Jerry", false},
		{"contains quotes metachars", jsQuote("a.b"), "", "axb", false},
		{"contains quotes metachars match", jsQuote("a.b*"), "", "xa.b*y", true},
		{"contains quote with \\E", jsQuote(`a\Eb`), "", `xa\Eby`, true},
		{"contains is case-sensitive", jsQuote("jerry"), "", "Tom & Jerry", false},
		{"startsWith", "^" + jsQuote("教育"), "", "教育群", true},
		{"startsWith not", "^" + jsQuote("教育"), "", "Tom 教育群", false},
		{"endsWith", jsQuote("群") + "$", "", "教育群", true},
		{"endsWith not", jsQuote("教育") + "$", "", "教育群", false},

		// matches with options.
		{"i option", "^tom", "i", "Tom & Jerry", true},
		{"no i option", "^tom", "", "Tom & Jerry", false},
		{"m option", "^b", "m", "a\nb", true},
		{"no m option", "^b", "", "a\nb", false},
		{"s option", "a.b", "s", "a\nb", true},
		{"no s option", "a.b", "", "a\nb", false},
		{"im options", "^B$", "im", "a\nb", true},
		{"repeated option", "^B", "ii", "b", true},
		{"x option", "a b # comment\n c", "x", "abc", true},
		{"x option keeps class space", "^a[ ]b$", "x", "a b", true},
		{"x option keeps escaped space", `^a\ b$`, "x", "a b", true},
		{"x option keeps escaped hash", `^a\#b$`, "x", "a#b", true},
		{"x option posix class", `^[[:alpha:] ]+$`, "x", "ab c", true},
		{"x option leading bracket in class", `^[]a ]+$`, "x", "a] a", true},
		{"x option quote", `^\Qa b\E$`, "x", "a b", true},

		// \uXXXX escapes (Swift/ObjC/Java docs example for Chinese text).
		{"unicode class", `[\u4e00-\u9fa5]`, "", "中文", true},
		{"unicode class not", `[\u4e00-\u9fa5]`, "", "english", false},
		{"unicode escape", `^\u0041$`, "", "A", true},
		{"escaped backslash then u", `^\\u0041$`, "", `\u0041`, true},
		{"unicode inside quote stays literal", `^\Q\u0041\E$`, "", `\u0041`, true},

		// The "does not contain" idiom from the LeanCloud docs.
		{"not contains", "^((?!教育).)*$", "i", "Tom & Jerry", true},
		{"not contains fails", "^((?!教育).)*$", "i", "Tom & Jerry 教育群", false},
		{"not contains at start", "^((?!教育).)*$", "", "教育群", false},
		{"not contains at end", "^((?!教育).)*$", "", "群教育", false},
		{"not contains empty", "^((?!教育).)*$", "", "", true},
		{"not contains i", "^((?!jerry).)*$", "i", "Tom & Jerry", false},
		{"not contains case-sensitive", "^((?!jerry).)*$", "", "Tom & Jerry", true},
		{"not contains newline", "^((?!x).)*$", "", "a\nb", false},
		{"not contains newline s", "^((?!x).)*$", "s", "a\nb", true},
		{"not contains non-capturing", "^(?:(?!x).)*$", "", "abc", true},
		{"not contains regex", `^((?!\d+).)*$`, "", "abc", true},
		{"not contains regex fails", `^((?!\d+).)*$`, "", "ab1c", false},
		{"not contains end anchor", `^((?!c$).)*$`, "", "abc", false},
		{"not contains end anchor ok", `^((?!c$).)*$`, "", "acb", true},
		{"not contains empty match at end only", `^((?!$).)*$`, "", "abc", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			re, err := compileRegex("k", tt.src, tt.opts)
			if err != nil {
				t.Fatalf("compileRegex(%q, %q): %v", tt.src, tt.opts, err)
			}
			if got := re.MatchString(tt.in); got != tt.want {
				t.Fatalf("%q /%s/ on %q = %v, want %v", tt.src, tt.opts, tt.in, got, tt.want)
			}
			// The same through Parse, as a where document.
			where, _ := json.Marshal(map[string]any{"k": map[string]any{"$regex": tt.src, "$options": tt.opts}})
			f := mustParse(t, string(where))
			if got := f.Match(map[string]any{"k": tt.in}); got != tt.want {
				t.Fatalf("Match(%s) on %q = %v, want %v", where, tt.in, got, tt.want)
			}
		})
	}
}

func TestQueryRegexErrors(t *testing.T) {
	for _, src := range []string{
		"^((?!教育).)* $ ", // the Swift/ObjC/Java docs variant is not the idiom
		"foo(?=bar)",
		"(?<=a)b",
		"^((?!a).)*$|(?!b)",
		"^((?!(a).)*$",
		`(a)\1`,
		"[a",
		`^\u00$`, // not a complete \uXXXX escape
	} {
		if _, err := compileRegex("name", src, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("compileRegex(%q) err = %v, want ErrInvalid", src, err)
		}
	}
}

// TestQueryRegexProgramBudget: the $regex patterns of one where document
// together may compile to at most MaxRegexProgram instructions; the SDKs'
// contains queries stay far below it.
func TestQueryRegexProgramBudget(t *testing.T) {
	long := strings.Repeat("ab", 200) // 400 bytes, under MaxRegexLen
	var ors []string
	for range 10 {
		ors = append(ors, `{"name":{"$regex":"`+long+`"}}`)
	}
	if _, err := Parse([]byte(`{"$or":[` + strings.Join(ors, ",") + `]}`)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "instructions") {
		t.Fatalf("ten 400-byte patterns: err = %v, want the program budget error", err)
	}
	if _, err := Parse([]byte(`{"name":{"$regex":"\\Q` + strings.Repeat("x", 100) + `\\E","$options":"i"}}`)); err != nil {
		t.Fatalf("a 100-character contains query: %v", err)
	}
}
