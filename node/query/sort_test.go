package query

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// sortDocsJSON covers missing values, dates in both encodings, ties and mixed types.
const sortDocsJSON = `[
	{"objectId": "a", "name": "beta", "createdAt": "2018-01-02T00:00:00.000Z",
	 "lm": {"__type": "Date", "iso": "2018-03-01T00:00:00.000Z"}, "n": 2, "b": true},
	{"objectId": "b", "name": "alpha", "createdAt": "2018-01-03T00:00:00.000Z", "n": 10, "b": false},
	{"objectId": "c", "name": "beta", "createdAt": "2018-01-01T00:00:00.000Z",
	 "lm": {"__type": "Date", "iso": "2018-02-01T00:00:00.000Z"}, "n": 2},
	{"objectId": "d", "name": "Zeta", "createdAt": "2018-01-01T00:00:00Z",
	 "lm": {"__type": "Date", "iso": "2018-04-01T00:00:00.000Z"}, "n": "2", "b": true}
]`

func sortIDs(tb testing.TB, spec string) []string {
	tb.Helper()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(sortDocsJSON), &docs); err != nil {
		tb.Fatalf("decode: %v", err)
	}
	s, err := ParseSort(spec)
	if err != nil {
		tb.Fatalf("ParseSort(%q): %v", spec, err)
	}
	slices.SortStableFunc(docs, s.Compare)
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d["objectId"].(string)
	}
	return ids
}

func TestQuerySort(t *testing.T) {
	tests := []struct {
		spec string
		want string
	}{
		{"", "a,b,c,d"},
		{"createdAt", "c,d,a,b"},  // c and d are the same instant: objectId breaks the tie
		{"-createdAt", "b,a,c,d"}, // ties stay objectId ascending when descending
		{"-lm", "d,a,c,b"},        // missing sorts last descending
		{"lm", "b,c,a,d"},         // missing sorts first ascending
		{"name", "d,b,a,c"},       // byte order: "Zeta" < "alpha"
		{"name,-createdAt", "d,b,a,c"},
		{"-name,createdAt", "c,a,b,d"},
		{"n", "a,c,b,d"}, // numbers before strings
		{"-n", "d,b,a,c"},
		{"b", "c,b,a,d"}, // missing < false < true
		{" name , -createdAt ", "d,b,a,c"},
		{"objectId", "a,b,c,d"},
		{"-objectId", "d,c,b,a"},
		{"fakeKey", "a,b,c,d"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			if got := strings.Join(sortIDs(t, tt.spec), ","); got != tt.want {
				t.Fatalf("sort %q = %s, want %s", tt.spec, got, tt.want)
			}
		})
	}
}

func TestQuerySortEmpty(t *testing.T) {
	for spec, empty := range map[string]bool{"": true, "  ": true, "-lm": false, "a,b": false} {
		s, err := ParseSort(spec)
		if err != nil || s.Empty() != empty {
			t.Errorf("ParseSort(%q) = Empty %v, %v; want %v", spec, s.Empty(), err, empty)
		}
	}
}

func TestQuerySortErrors(t *testing.T) {
	for _, spec := range []string{"-", "a,,b", ",a", "a,", "a..b", "-.a", strings.Repeat("a,", MaxSortKeys) + "a"} {
		if _, err := ParseSort(spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSort(%q) err = %v, want ErrInvalid", spec, err)
		}
	}
}

// TestQuerySortTotalOrder checks antisymmetry and transitivity of Compare over values of every
// type rank, including strings that look like dates.
func TestQuerySortTotalOrder(t *testing.T) {
	values := []string{
		`null`, `1`, `-2.5`, `"x"`, `"X"`, `""`, `true`, `false`, `[1,2]`, `[]`, `{"a":1}`, `{}`,
		`"2018-01-01T00:00:00Z"`, `"2018-01-01T00:00:00.1Z"`, `"2018-01-01T00:00:00Y"`,
		`{"__type":"Date","iso":"2018-01-01T00:00:00.000Z"}`, `{"__type":"Date","iso":"bad"}`,
	}
	var docs []map[string]any
	for i, v := range values {
		docs = append(docs, decode(t, `{"objectId":"`+string(rune('a'+i))+`","v":`+v+`}`))
	}
	docs = append(docs, decode(t, `{"objectId":"zz"}`), decode(t, `{"v":1}`))
	for _, spec := range []string{"v", "-v"} {
		s, _ := ParseSort(spec)
		for _, a := range docs {
			if s.Compare(a, a) != 0 {
				t.Fatalf("%s: Compare(%v, itself) != 0", spec, a)
			}
			for _, b := range docs {
				if s.Compare(a, b) != -s.Compare(b, a) {
					t.Fatalf("%s: Compare not antisymmetric for %v, %v", spec, a, b)
				}
				for _, c := range docs {
					if s.Compare(a, b) < 0 && s.Compare(b, c) < 0 && s.Compare(a, c) >= 0 {
						t.Fatalf("%s: not transitive: %v < %v < %v", spec, a, b, c)
					}
				}
			}
		}
	}
}

func TestQuerySortSingle(t *testing.T) {
	tests := []struct {
		spec     string
		column   string
		desc, ok bool
	}{
		{"-lm", "lm", true, true},
		{" updatedAt ", "updatedAt", false, true},
		{"", "", false, false},
		{"-lm,objectId", "", false, false},
		{"-attr.lm", "", false, false},
	}
	for _, tt := range tests {
		s, err := ParseSort(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		column, desc, ok := s.Single()
		if column != tt.column || desc != tt.desc || ok != tt.ok {
			t.Errorf("%q: Single() = %q, %v, %v; want %q, %v, %v", tt.spec, column, desc, ok, tt.column, tt.desc, tt.ok)
		}
	}
}
