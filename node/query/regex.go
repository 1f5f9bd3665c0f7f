package query

import (
	"regexp"
	"regexp/syntax"
	"strings"
)

// regexProgramSize returns the number of instructions src compiles to (as RE2 runs it), after
// the same rewriting compileRegex does.
func regexProgramSize(src, opts string) (int, error) {
	flags := syntax.Perl
	if strings.ContainsRune(opts, 'i') {
		flags |= syntax.FoldCase
	}
	if strings.ContainsRune(opts, 's') {
		flags |= syntax.DotNL
	}
	re := rewriteRegex(src, strings.ContainsRune(opts, 'x'))
	if inner, ok := notContainsIdiom(re); ok {
		re = inner
	}
	parsed, err := syntax.Parse(re, flags)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

// compileRegex compiles a $regex source with its $options for Go's RE2 engine. Besides RE2
// syntax (which includes \Q...\E quoting, as sent by the SDKs' contains/startsWith/endsWith) it
// accepts \uXXXX escapes, the x option, and the "does not contain" idiom ^((?!X).)*$ from the
// LeanCloud docs. Anything else RE2 cannot compile (other lookarounds, backreferences) is an error.
func compileRegex(key, src, opts string) (matcher, error) {
	if len(src) > MaxRegexLen {
		return nil, invalidf("$regex on key %q is longer than %d bytes", key, MaxRegexLen)
	}
	flags, extended := "", false
	for _, r := range opts {
		switch r {
		case 'i', 'm', 's':
			if !strings.ContainsRune(flags, r) {
				flags += string(r)
			}
		case 'x':
			extended = true
		default:
			return nil, invalidf("unsupported $options %q on key %q (want i, m, s or x)", opts, key)
		}
	}
	prefix := ""
	if flags != "" {
		prefix = "(?" + flags + ")"
	}
	re2 := rewriteRegex(src, extended)
	if inner, ok := notContainsIdiom(re2); ok && !strings.Contains(flags, "m") {
		if re, err := regexp.Compile(prefix + inner); err == nil {
			return notContains{re: re, dotAll: strings.Contains(flags, "s")}, nil
		}
	}
	re, err := regexp.Compile(prefix + re2)
	if err != nil {
		return nil, invalidf("$regex %q on key %q: %v", src, key, err)
	}
	return re, nil
}

// notContainsIdiom recognises ^((?!X).)*$ and ^(?:(?!X).)*$ and returns X. X must compile on its
// own, which guarantees balanced groups, so the whole pattern really has this shape.
func notContainsIdiom(src string) (string, bool) {
	const suffix = ").)*$"
	for _, prefix := range []string{"^((?!", "^(?:(?!"} {
		if len(src) > len(prefix)+len(suffix) && strings.HasPrefix(src, prefix) && strings.HasSuffix(src, suffix) {
			return src[len(prefix) : len(src)-len(suffix)], true
		}
	}
	return "", false
}

// notContains evaluates ^((?!X).)*$: every character of the string can be consumed by "." and no
// match of X starts before the end of the string.
type notContains struct {
	re     *regexp.Regexp // X, with the i/s flags
	dotAll bool           // the s flag: "." also consumes newlines
}

// MatchString reports whether s matches the idiom. Safe for concurrent use.
func (n notContains) MatchString(s string) bool {
	if !n.dotAll && strings.IndexByte(s, '\n') >= 0 {
		return false
	}
	loc := n.re.FindStringIndex(s)
	return loc == nil || loc[0] >= len(s)
}

// rewriteRegex turns \uXXXX into RE2's \x{XXXX} and, for the x option, drops unescaped whitespace
// and #-comments outside character classes. \Q...\E sections are copied verbatim.
func rewriteRegex(src string, extended bool) string {
	if !strings.Contains(src, `\u`) && !extended {
		return src
	}
	var b strings.Builder
	inClass := false
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src):
			i += rewriteEscape(&b, src[i:])
		case inClass:
			if c == ']' {
				inClass = false
			} else if strings.HasPrefix(src[i:], "[:") {
				if end := strings.Index(src[i+2:], ":]"); end >= 0 {
					b.WriteString(src[i : i+2+end+2])
					i += 2 + end + 2
					continue
				}
			}
			b.WriteByte(c)
			i++
		case c == '[':
			i += openClass(&b, src[i:])
			inClass = true
		case extended && isSpace(c):
			i++
		case extended && c == '#':
			if nl := strings.IndexByte(src[i:], '\n'); nl >= 0 {
				i += nl + 1
			} else {
				i = len(src)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// rewriteEscape copies the escape sequence at the start of s (which begins with a backslash) and
// returns the number of bytes consumed.
func rewriteEscape(b *strings.Builder, s string) int {
	switch {
	case s[1] == 'Q':
		end := strings.Index(s[2:], `\E`)
		if end < 0 {
			b.WriteString(s)
			return len(s)
		}
		b.WriteString(s[:2+end+2])
		return 2 + end + 2
	case s[1] == 'u' && len(s) >= 6 && isHex(s[2:6]):
		b.WriteString(`\x{` + s[2:6] + `}`)
		return 6
	}
	b.WriteString(s[:2])
	return 2
}

// openClass copies the opening of a character class ("[", "[^", and a leading literal "]") and
// returns the number of bytes consumed.
func openClass(b *strings.Builder, s string) int {
	n := 1
	if n < len(s) && s[n] == '^' {
		n++
	}
	if n < len(s) && s[n] == ']' {
		n++
	}
	b.WriteString(s[:n])
	return n
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('0' > c || c > '9') && ('a' > c || c > 'f') && ('A' > c || c > 'F') {
			return false
		}
	}
	return true
}
