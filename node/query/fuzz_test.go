package query

import (
	"errors"
	"testing"
)

// fuzzSeeds are where documents as the SDKs send them, plus edge cases.
var fuzzSeeds = []string{
	`{}`,
	`{"m":"Tom"}`,
	`{"objectId":"551260efe4b01608686c3e0f"}`,
	`{"objectId":{"$in":["551260efe4b01608686c3e0f","5a5ec5a5a22b9d0044bbd6b2"]}}`,
	`{"attr.type":"private"}`,
	`{"language":{"$regex":"[\\u4e00-\\u9fa5]"}}`,
	`{"name":{"$regex":"^\\Q教育\\E"}}`,
	`{"name":{"$regex":"\\Q教育\\E"}}`,
	`{"name":{"$regex":"^((?!教育).)*$","$options":"i"}}`,
	`{"name":{"$regex":"a # c\n b","$options":"xsm"}}`,
	`{"m":{"$in":["Tom"]}}`,
	`{"lm":{"$exists":false}}`,
	`{"lm":{"$exists":true}}`,
	`{"keywords":{"$regex":"\\Q教育\\E"},"age":{"$lt":18}}`,
	`{"$or":[{"age":{"$gt":18}},{"keywords":{"$regex":"\\Q教育\\E"}}]}`,
	`{"$and":[{"objectId":"a"},{"objectId":"b"}]}`,
	`{"createdAt":{"$lt":{"__type":"Date","iso":"1970-01-01T00:00:00.000Z"}}}`,
	`{"createdAt":{"$gt":{"__type":"Date","iso":"2030-01-01T00:00:00.000Z"}}}`,
	`{"m":{"$size":2,"$all":["Tom","Jerry"]}}`,
	`{"m":{"$nin":["x"]},"c":{"$ne":"y"},"n":{"$gte":1,"$lte":"z"}}`,
	`{"$nor":[{"a.b.0":null}]}`,
	`{"loc":{"$near":{}}}`,
	`{"name":{"$regex":"foo(?=bar)"}}`,
	`[1]`,
	`{"a":`,
}

// fuzzDocs are decoded once; Match must not modify them.
var fuzzDocs = []string{convJSON, `{}`, `{"m":null,"attr":[{"type":1}],"lm":"x","createdAt":{"__type":"Date"}}`}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	docs := make([]map[string]any, len(fuzzDocs))
	for i, js := range fuzzDocs {
		docs[i] = decode(f, js)
	}
	f.Fuzz(func(t *testing.T, where []byte) {
		flt, err := Parse(where)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", where, err)
			}
			return
		}
		for _, d := range docs {
			flt.Match(d)
		}
		flt.ObjectIDs()
		flt.Member()
	})
}

func FuzzParseSort(f *testing.F) {
	for _, s := range []string{"", "-lm", "name,-createdAt", "a.b,-c.0", "-", "a,,b"} {
		f.Add(s)
	}
	a, b := decode(f, convJSON), decode(f, `{"objectId":"b","lm":1,"name":["x"]}`)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSort(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSort(%q) error %v does not wrap ErrInvalid", spec, err)
			}
			return
		}
		if s.Compare(a, b) != -s.Compare(b, a) || s.Compare(a, a) != 0 {
			t.Fatalf("ParseSort(%q): Compare is not antisymmetric", spec)
		}
	})
}
