package query

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// convJSON is a conversation as the store returns it: createdAt/updatedAt as strings, lm and
// custom dates as date objects, nested custom attributes.
const convJSON = `{
	"objectId": "5a5ecf3500b0b1f1d5e3b7a1",
	"name": "Tom & Jerry 教育群",
	"c": "Tom",
	"m": ["Tom", "Jerry", "Harry"],
	"mu": [],
	"tr": false,
	"sys": false,
	"unique": true,
	"uniqueId": "u-1",
	"createdAt": "2018-01-17T04:15:33.386Z",
	"updatedAt": "2018-01-18T04:15:33.386Z",
	"lm": {"__type": "Date", "iso": "2018-01-19T00:00:00.000Z"},
	"attr": {"type": "private", "level": 3, "tags": ["a", "b"],
		"since": {"__type": "Date", "iso": "2017-06-01T00:00:00.000Z"}},
	"age": 12,
	"keywords": "儿童教育",
	"language": "中文",
	"nothing": null
}`

// decode unmarshals a JSON object the way the store does.
func decode(tb testing.TB, js string) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		tb.Fatalf("decode %s: %v", js, err)
	}
	return m
}

func mustParse(tb testing.TB, where string) *Filter {
	tb.Helper()
	f, err := Parse([]byte(where))
	if err != nil {
		tb.Fatalf("Parse(%s): %v", where, err)
	}
	return f
}

func TestQueryMatchOperators(t *testing.T) {
	doc := decode(t, convJSON)
	tests := []struct {
		name  string
		where string
		want  bool
	}{
		// Equality.
		{"eq string", `{"name":"Tom & Jerry 教育群"}`, true},
		{"eq string other", `{"name":"tom & jerry 教育群"}`, false},
		{"eq bool", `{"tr":false}`, true},
		{"eq bool mismatch", `{"unique":false}`, false},
		{"eq number", `{"age":12}`, true},
		{"eq number vs string", `{"age":"12"}`, false},
		{"eq dot path", `{"attr.type":"private"}`, true},
		{"eq dot path other", `{"attr.type":"public"}`, false},
		{"eq dot path number", `{"attr.level":3}`, true},
		{"eq dot path missing", `{"attr.nope.deeper":1}`, false},
		{"eq dot path through scalar", `{"name.x":1}`, false},
		{"eq array index", `{"m.1":"Jerry"}`, true},
		{"eq array index out of range", `{"m.7":"Jerry"}`, false},
		{"eq array contains", `{"m":"Jerry"}`, true},
		{"eq array contains not", `{"m":"Spike"}`, false},
		{"eq whole array", `{"m":["Tom","Jerry","Harry"]}`, true},
		{"eq whole array order", `{"m":["Jerry","Tom","Harry"]}`, false},
		{"eq object literal", `{"attr":{"type":"private","level":3,"tags":["a","b"],"since":{"__type":"Date","iso":"2017-06-01T00:00:00.000Z"}}}`, true},
		{"eq object literal partial", `{"attr":{"type":"private"}}`, false},
		{"eq null matches null", `{"nothing":null}`, true},
		{"eq null matches missing", `{"fakeKey":null}`, true},
		{"eq null on present", `{"name":null}`, false},
		{"eq date on string column", `{"createdAt":{"__type":"Date","iso":"2018-01-17T04:15:33.386Z"}}`, true},
		{"eq date on string column other precision", `{"createdAt":{"__type":"Date","iso":"2018-01-17T12:15:33.386+08:00"}}`, true},
		{"eq date on date column", `{"lm":{"__type":"Date","iso":"2018-01-19T00:00:00Z"}}`, true},
		{"eq date mismatch", `{"lm":{"__type":"Date","iso":"2018-01-19T00:00:01Z"}}`, false},
		{"$eq", `{"c":{"$eq":"Tom"}}`, true},
		{"$eq array contains", `{"m":{"$eq":"Harry"}}`, true},
		{"several keys anded", `{"c":"Tom","tr":false,"attr.type":"private"}`, true},
		{"several keys one fails", `{"c":"Tom","tr":true}`, false},

		// $ne.
		{"$ne other", `{"c":{"$ne":"Jerry"}}`, true},
		{"$ne same", `{"c":{"$ne":"Tom"}}`, false},
		{"$ne array contains", `{"m":{"$ne":"Tom"}}`, false},
		{"$ne array not contains", `{"m":{"$ne":"Spike"}}`, true},
		{"$ne missing", `{"fakeKey":{"$ne":1}}`, true},
		{"$ne date", `{"lm":{"$ne":{"__type":"Date","iso":"2018-01-19T00:00:00Z"}}}`, false},

		// Ordering.
		{"$lt number", `{"age":{"$lt":18}}`, true},
		{"$lt number equal", `{"age":{"$lt":12}}`, false},
		{"$lte number equal", `{"age":{"$lte":12}}`, true},
		{"$gt number", `{"age":{"$gt":12}}`, false},
		{"$gte number", `{"age":{"$gte":12}}`, true},
		{"range anded", `{"age":{"$gt":10,"$lt":18}}`, true},
		{"range anded empty", `{"age":{"$gt":12,"$lt":18}}`, false},
		{"$lt string", `{"c":{"$lt":"Tony"}}`, true},
		{"$gt string", `{"c":{"$gt":"Tony"}}`, false},
		{"$lt mixed number vs string", `{"age":{"$lt":"99"}}`, false},
		{"$gt mixed string vs number", `{"c":{"$gt":0}}`, false},
		{"$lt missing", `{"fakeKey":{"$lt":5}}`, false},
		{"$gt date on string column", `{"createdAt":{"$gt":{"__type":"Date","iso":"1970-01-01T00:00:00.000Z"}}}`, true},
		{"$lt date on string column", `{"createdAt":{"$lt":{"__type":"Date","iso":"1970-01-01T00:00:00.000Z"}}}`, false},
		{"$lte date equal instant", `{"updatedAt":{"$lte":{"__type":"Date","iso":"2018-01-18T04:15:33.386Z"}}}`, true},
		{"$gt date on date column", `{"lm":{"$gt":{"__type":"Date","iso":"2018-01-18T00:00:00Z"}}}`, true},
		{"$lt date on nested date", `{"attr.since":{"$lt":{"__type":"Date","iso":"2018-01-01T00:00:00Z"}}}`, true},
		{"$lt date vs non-date string", `{"name":{"$lt":{"__type":"Date","iso":"2030-01-01T00:00:00Z"}}}`, false},
		{"$lt date vs number", `{"age":{"$lt":{"__type":"Date","iso":"2030-01-01T00:00:00Z"}}}`, false},
		{"$gt string vs date column is lexical only", `{"lm":{"$gt":"2000"}}`, false},
		{"$gt array any element", `{"m":{"$gt":"Jerry"}}`, true},
		{"$gt array no element", `{"m":{"$gt":"Zed"}}`, false},

		// $in / $nin.
		{"$in scalar", `{"c":{"$in":["Jerry","Tom"]}}`, true},
		{"$in scalar not", `{"c":{"$in":["Jerry","Spike"]}}`, false},
		{"$in array any element", `{"m":{"$in":["Tom"]}}`, true},
		{"$in array no element", `{"m":{"$in":["Spike","Tyke"]}}`, false},
		{"$in numbers", `{"age":{"$in":[1,12]}}`, true},
		{"$in mixed types", `{"age":{"$in":["12",true]}}`, false},
		{"$in dates", `{"lm":{"$in":[{"__type":"Date","iso":"2018-01-19T00:00:00Z"}]}}`, true},
		{"$in null matches missing", `{"fakeKey":{"$in":[null,1]}}`, true},
		{"$in missing", `{"fakeKey":{"$in":[1]}}`, false},
		{"$in empty", `{"c":{"$in":[]}}`, false},
		{"$nin scalar", `{"c":{"$nin":["Jerry"]}}`, true},
		{"$nin scalar in", `{"c":{"$nin":["Tom"]}}`, false},
		{"$nin array", `{"m":{"$nin":["Spike"]}}`, true},
		{"$nin array element", `{"m":{"$nin":["Spike","Harry"]}}`, false},
		{"$nin missing", `{"fakeKey":{"$nin":[1]}}`, true},

		// $all / $size.
		{"$all", `{"m":{"$all":["Tom","Harry"]}}`, true},
		{"$all one missing", `{"m":{"$all":["Tom","Spike"]}}`, false},
		{"$all empty on array", `{"m":{"$all":[]}}`, true},
		{"$all empty on scalar", `{"c":{"$all":[]}}`, false},
		{"$all on missing", `{"fakeKey":{"$all":["x"]}}`, false},
		{"$size", `{"m":{"$size":3}}`, true},
		{"$size other", `{"m":{"$size":2}}`, false},
		{"$size empty array", `{"mu":{"$size":0}}`, true},
		{"$size on scalar", `{"c":{"$size":1}}`, false},
		{"withMembers", `{"m":{"$size":3,"$all":["Harry","Jerry","Tom"]}}`, true},
		{"withMembers wrong size", `{"m":{"$size":2,"$all":["Jerry","Tom"]}}`, false},

		// $exists.
		{"$exists true", `{"lm":{"$exists":true}}`, true},
		{"$exists false on present", `{"lm":{"$exists":false}}`, false},
		{"$exists fakeKey", `{"fakeKey":{"$exists":true}}`, false},
		{"$exists false fakeKey", `{"fakeKey":{"$exists":false}}`, true},
		{"$exists null value", `{"nothing":{"$exists":true}}`, true},
		{"$exists dot path", `{"attr.type":{"$exists":true}}`, true},

		// $regex (see also TestQueryRegex).
		{"$regex", `{"name":{"$regex":"Jerry"}}`, true},
		{"$regex case-sensitive", `{"name":{"$regex":"jerry"}}`, false},
		{"$regex i", `{"name":{"$regex":"jerry","$options":"i"}}`, true},
		{"$regex array element", `{"m":{"$regex":"^Har"}}`, true},
		{"$regex non-string", `{"age":{"$regex":"1"}}`, false},
		{"$regex missing", `{"fakeKey":{"$regex":""}}`, false},
		{"$regex and $ne", `{"name":{"$regex":"Tom","$ne":"Tom"}}`, true},

		// $and / $or / $nor.
		{"$and", `{"$and":[{"c":"Tom"},{"age":{"$lt":18}}]}`, true},
		{"$and one fails", `{"$and":[{"c":"Tom"},{"age":{"$gt":18}}]}`, false},
		{"$or", `{"$or":[{"age":{"$gt":18}},{"keywords":{"$regex":"\\Q教育\\E"}}]}`, true},
		{"$or none", `{"$or":[{"age":{"$gt":18}},{"c":"Jerry"}]}`, false},
		{"$nor", `{"$nor":[{"age":{"$gt":18}},{"c":"Jerry"}]}`, true},
		{"$nor one", `{"$nor":[{"age":{"$gt":18}},{"c":"Tom"}]}`, false},
		{"nested", `{"$or":[{"$and":[{"c":"Jerry"}]},{"$and":[{"c":"Tom"},{"$or":[{"m":"Spike"},{"m":"Harry"}]}]}]}`, true},
		{"nested fails", `{"$or":[{"$and":[{"c":"Jerry"}]},{"$and":[{"c":"Tom"},{"$or":[{"m":"Spike"},{"m":"Tyke"}]}]}]}`, false},
		{"logical with field", `{"c":"Tom","$or":[{"tr":true},{"sys":false}]}`, true},
		{"empty sub-object", `{"$and":[{}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.where)
			if f.Empty() {
				t.Fatalf("Empty() = true for %s", tt.where)
			}
			if got := f.Match(doc); got != tt.want {
				t.Fatalf("Match(%s) = %v, want %v", tt.where, got, tt.want)
			}
		})
	}
}

func TestQueryEmpty(t *testing.T) {
	doc := decode(t, convJSON)
	for _, where := range []string{"", "  \n", "{}", " { } "} {
		f := mustParse(t, where)
		if !f.Empty() || !f.Match(doc) {
			t.Fatalf("Parse(%q): Empty=%v Match=%v, want true true", where, f.Empty(), f.Match(doc))
		}
		if _, ok := f.ObjectIDs(); ok {
			t.Fatalf("Parse(%q).ObjectIDs ok", where)
		}
		if _, ok := f.Member(); ok {
			t.Fatalf("Parse(%q).Member ok", where)
		}
	}
	f, err := Parse(nil)
	if err != nil || !f.Empty() {
		t.Fatalf("Parse(nil) = %v, %v", f, err)
	}
}

func TestQueryParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		where   string
		wantMsg string
	}{
		{"malformed json", `{"name":`, "not valid JSON"},
		{"trailing garbage", `{} x`, "not valid JSON"},
		{"array", `[{"a":1}]`, "must be a JSON object, got array"},
		{"string", `"name"`, "got string"},
		{"null", `null`, "got null"},
		{"unsupported field operator", `{"loc":{"$near":{"__type":"GeoPoint"}}}`, `unsupported operator "$near" on key "loc"`},
		{"unsupported $not", `{"name":{"$not":{"$regex":"a"}}}`, `unsupported operator "$not" on key "name"`},
		{"unsupported top-level", `{"$where":"1"}`, `unsupported operator "$where"`},
		{"$relatedTo", `{"$relatedTo":{}}`, `unsupported operator "$relatedTo"`},
		{"mixed operator object", `{"a":{"$gt":1,"b":2}}`, `key "a" mixes operators with field "b"`},
		{"empty key", `{"":1}`, `invalid key ""`},
		{"empty segment", `{"attr..type":1}`, `invalid key "attr..type"`},
		{"trailing dot", `{"attr.":1}`, `invalid key "attr."`},
		{"$and not array", `{"$and":{"a":1}}`, "$and must be a non-empty array of objects, got object"},
		{"$or empty", `{"$or":[]}`, "$or must be a non-empty array"},
		{"$or element not object", `{"$or":[{"a":1},2]}`, "$or[1] must be an object, got number"},
		{"$in not array", `{"m":{"$in":"Tom"}}`, `$in on key "m" must be an array, got string`},
		{"$nin not array", `{"m":{"$nin":{}}}`, "$nin on key"},
		{"$all not array", `{"m":{"$all":1}}`, "$all on key"},
		{"$size negative", `{"m":{"$size":-1}}`, "non-negative integer"},
		{"$size fraction", `{"m":{"$size":1.5}}`, "non-negative integer"},
		{"$size string", `{"m":{"$size":"2"}}`, "non-negative integer"},
		{"$exists not bool", `{"lm":{"$exists":1}}`, `$exists on key "lm" must be a boolean`},
		{"$lt bool", `{"age":{"$lt":true}}`, "needs a number, string or date, got boolean"},
		{"$gt array", `{"age":{"$gt":[1]}}`, "got array"},
		{"$gte null", `{"age":{"$gte":null}}`, "got null"},
		{"$lte object", `{"age":{"$lte":{"__type":"Pointer"}}}`, "got object"},
		{"bad date", `{"lm":{"$lt":{"__type":"Date","iso":"yesterday"}}}`, `bad date "yesterday" on key "lm"`},
		{"date without iso", `{"lm":{"__type":"Date"}}`, "bad date"},
		{"$regex not string", `{"name":{"$regex":1}}`, "$regex on key \"name\" must be a string"},
		{"$options not string", `{"name":{"$regex":"a","$options":1}}`, "$options on key"},
		{"$options alone", `{"name":{"$options":"i"}}`, `$options without $regex on key "name"`},
		{"$options unknown", `{"name":{"$regex":"a","$options":"g"}}`, `unsupported $options "g"`},
		{"$regex lookahead", `{"name":{"$regex":"foo(?=bar)"}}`, "invalid or unsupported Perl syntax"},
		{"$regex lookbehind", `{"name":{"$regex":"(?<!a)b"}}`, "$regex"},
		{"$regex backreference", `{"name":{"$regex":"(a)\\1"}}`, "invalid escape sequence"},
		{"$regex unbalanced", `{"name":{"$regex":"(a"}}`, "missing closing )"},
		{"$regex too long", `{"name":{"$regex":"` + strings.Repeat("a", MaxRegexLen+1) + `"}}`, "longer than 1024 bytes"},
		{"idiom with m", `{"name":{"$regex":"^((?!a).)*$","$options":"m"}}`, "invalid or unsupported Perl syntax"},
		{"nested error", `{"$or":[{"a":1},{"$and":[{"b":{"$foo":1}}]}]}`, `unsupported operator "$foo" on key "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.where))
			if err == nil {
				t.Fatalf("Parse(%s) = %v, want error", tt.where, f)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%s) error %v does not wrap ErrInvalid", tt.where, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Parse(%s) error %q, want it to contain %q", tt.where, err, tt.wantMsg)
			}
		})
	}
}

func TestQueryLimits(t *testing.T) {
	deep := strings.Repeat(`{"$and":[`, MaxDepth+1) + `{"a":1}` + strings.Repeat(`]}`, MaxDepth+1)
	if _, err := Parse([]byte(deep)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("depth %d: err = %v", MaxDepth+1, err)
	}
	ok := strings.Repeat(`{"$and":[`, MaxDepth) + `{"a":1}` + strings.Repeat(`]}`, MaxDepth)
	mustParse(t, ok)

	var conds []string
	for i := range MaxConditions + 1 {
		conds = append(conds, `{"k":`+strings.Repeat("1", 1+i%3)+`}`)
	}
	many := `{"$or":[` + strings.Join(conds, ",") + `]}`
	if _, err := Parse([]byte(many)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "conditions") {
		t.Fatalf("%d conditions: err = %v", MaxConditions+1, err)
	}

	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = `"id` + strings.Repeat("x", i%7) + `"`
	}
	list := `[` + strings.Join(ids, ",") + `]`
	mustParse(t, `{"objectId":{"$in":`+list+`}}`) // the JS SDK sends up to 999 ids
	var lists []string
	for range MaxListElems/1000 + 1 {
		lists = append(lists, `{"m":{"$in":`+list+`}}`)
	}
	if _, err := Parse([]byte(`{"$or":[` + strings.Join(lists, ",") + `]}`)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "elements") {
		t.Fatalf("list elements: err = %v", err)
	}
}

func TestQueryObjectIDs(t *testing.T) {
	tests := []struct {
		where string
		want  []string
		ok    bool
	}{
		{`{"objectId":"a"}`, []string{"a"}, true},
		{`{"objectId":{"$eq":"a"}}`, []string{"a"}, true},
		{`{"objectId":{"$in":["a","b","a"]}}`, []string{"a", "b"}, true},
		{`{"objectId":{"$in":[]}}`, []string{}, true},
		{`{"objectId":{"$in":["a","b"],"$ne":"b"}}`, []string{"a", "b"}, true},
		{`{"objectId":{"$in":["a","b"]},"c":"Tom"}`, []string{"a", "b"}, true},
		{`{"$and":[{"objectId":"a"},{"objectId":"b"}]}`, []string{}, true},
		{`{"$and":[{"objectId":{"$in":["a","b"]}},{"objectId":"b"}]}`, []string{"b"}, true},
		{`{"$or":[{"objectId":"a"},{"objectId":{"$in":["b","a"]}}]}`, []string{"a", "b"}, true},
		{`{"$or":[{"objectId":"a"},{"c":"Tom"}]}`, nil, false},
		{`{"$nor":[{"objectId":"a"}]}`, nil, false},
		{`{"objectId":{"$ne":"a"}}`, nil, false},
		{`{"objectId":{"$nin":["a"]}}`, nil, false},
		{`{"objectId":{"$in":["a",null]}}`, nil, false},
		{`{"objectId":1}`, nil, false},
		{`{"objectId":{"$regex":"^a"}}`, nil, false},
		{`{"c":"Tom"}`, nil, false},
		{`{"attr.objectId":"a"}`, nil, false},
	}
	for _, tt := range tests {
		got, ok := mustParse(t, tt.where).ObjectIDs()
		if ok != tt.ok || !slices.Equal(got, tt.want) || (ok && got == nil) {
			t.Errorf("ObjectIDs(%s) = %q, %v; want %q, %v", tt.where, got, ok, tt.want, tt.ok)
		}
	}
}

func TestQueryMember(t *testing.T) {
	tests := []struct {
		where string
		want  string
		ok    bool
	}{
		{`{"m":"Tom"}`, "Tom", true},
		{`{"m":{"$eq":"Tom"}}`, "Tom", true},
		{`{"m":{"$in":["Tom"]}}`, "Tom", true},
		{`{"m":{"$all":["Tom","Jerry"]}}`, "Tom", true},
		{`{"m":{"$size":2,"$all":["Jerry","Tom"]}}`, "Jerry", true},
		{`{"m":"Tom","tr":false}`, "Tom", true},
		{`{"$and":[{"tr":false},{"m":"Tom"}]}`, "Tom", true},
		{`{"m":{"$in":["Tom","Jerry"]}}`, "", false},
		{`{"m":{"$in":["Tom",null]}}`, "", false},
		{`{"m":{"$ne":"Tom"}}`, "", false},
		{`{"m":{"$all":[]}}`, "", false},
		{`{"m":1}`, "", false},
		{`{"$or":[{"m":"Tom"}]}`, "", false},
		{`{"c":"Tom"}`, "", false},
	}
	for _, tt := range tests {
		got, ok := mustParse(t, tt.where).Member()
		if got != tt.want || ok != tt.ok {
			t.Errorf("Member(%s) = %q, %v; want %q, %v", tt.where, got, ok, tt.want, tt.ok)
		}
	}
}

// TestQueryHandBuiltDoc checks documents built in Go rather than decoded from JSON.
func TestQueryHandBuiltDoc(t *testing.T) {
	doc := map[string]any{"objectId": "x", "m": []string{"Tom"}, "n": 3, "j": json.Number("4")}
	for where, want := range map[string]bool{
		`{"m":"Tom"}`:             true,
		`{"m":{"$size":1}}`:       true,
		`{"n":3}`:                 true,
		`{"n":{"$gt":2.5}}`:       true,
		`{"j":{"$lte":4}}`:        true,
		`{"m":{"$in":["Jerry"]}}`: false,
	} {
		if got := mustParse(t, where).Match(doc); got != want {
			t.Errorf("Match(%s) = %v, want %v", where, got, want)
		}
	}
}

// TestQueryConcurrentMatch shares one Filter and Sort between goroutines (run with -race).
func TestQueryConcurrentMatch(t *testing.T) {
	f := mustParse(t, `{"$or":[{"name":{"$regex":"^((?!x).)*$","$options":"i"}},{"m":{"$in":["Tom"]}}],"lm":{"$exists":true}}`)
	s, err := ParseSort("-lm,name")
	if err != nil {
		t.Fatal(err)
	}
	a, b := decode(t, convJSON), decode(t, `{"objectId":"b"}`)
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 200 {
				ok = ok && f.Match(a) && !f.Match(b) && s.Compare(a, b) < 0
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Match/Compare gave a wrong result")
		}
	}
}

// BenchmarkQueryMatchLargeLists measures the worst SDK-shaped case: a 999-id $in and a 500-member
// $all against a 500-member conversation.
func BenchmarkQueryMatchLargeLists(b *testing.B) {
	members := make([]string, 500)
	ids := make([]string, 999)
	for i := range ids {
		ids[i] = `"c` + strconv.Itoa(i) + `"`
		if i < len(members) {
			members[i] = ids[i]
		}
	}
	doc := decode(b, `{"objectId":"c998","m":[`+strings.Join(members, ",")+`]}`)
	f := mustParse(b, `{"objectId":{"$in":[`+strings.Join(ids, ",")+`]},"m":{"$all":[`+strings.Join(members, ",")+`]}}`)
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(doc) {
			b.Fatal("no match")
		}
	}
}
