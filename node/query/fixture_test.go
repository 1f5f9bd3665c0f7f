package query

import (
	"encoding/json"
	"testing"
	"time"
)

// fixtureJSON is a small app: the JS test suite's fixture conversation plus two others.
const fixtureJSON = `[
	{"objectId": "5a5ec5a5a22b9d0044bbd6b2", "name": "Fixture Conversation", "c": "leeyeh",
	 "m": ["leeyeh", "xwang"], "tr": false, "sys": false, "unique": false,
	 "createdAt": "2018-01-17T04:15:33.386Z", "updatedAt": "2018-01-17T04:15:33.386Z",
	 "lm": {"__type": "Date", "iso": "2018-01-17T04:20:00.000Z"}, "attr": {"type": "private"}},
	{"objectId": "5a5ec5a5a22b9d0044bbd6b3", "name": "教育 room", "c": "Tom",
	 "tr": true, "sys": false, "unique": false,
	 "createdAt": "2019-03-01T00:00:00.000Z", "updatedAt": "2019-03-01T00:00:00.000Z",
	 "attr": {"type": "public"}, "language": "中文", "keywords": "教育", "age": 16},
	{"objectId": "5a5ec5a5a22b9d0044bbd6b4", "name": "System", "c": "admin",
	 "sys": true, "tr": false, "unique": false,
	 "createdAt": "2020-05-05T05:05:05.005Z", "updatedAt": "2020-05-06T05:05:05.005Z",
	 "lm": {"__type": "Date", "iso": "2021-01-01T00:00:00.000Z"}, "age": 30}
]`

const fixtureID = "5a5ec5a5a22b9d0044bbd6b2"

func fixtureDocs(tb testing.TB) []map[string]any {
	tb.Helper()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(fixtureJSON), &docs); err != nil {
		tb.Fatalf("decode fixture: %v", err)
	}
	return docs
}

// matchIDs returns the objectIds of the documents that match where, in order.
func matchIDs(tb testing.TB, docs []map[string]any, where string) []string {
	tb.Helper()
	f := mustParse(tb, where)
	ids := []string{}
	for _, d := range docs {
		if f.Match(d) {
			ids = append(ids, d["objectId"].(string))
		}
	}
	return ids
}

func jsDate(t time.Time) string {
	return `{"__type":"Date","iso":"` + t.UTC().Format("2006-01-02T15:04:05.000Z") + `"}`
}

// TestQueryFixture runs the fixture-driven checks of protocol spec §3.8.3 and the query examples
// of the LeanCloud docs against a small app.
func TestQueryFixture(t *testing.T) {
	docs := fixtureDocs(t)
	epoch, now := jsDate(time.Unix(0, 0)), jsDate(time.Now())
	idQuery := `{"objectId":"` + fixtureID + `"}`
	missing := `{"objectId":"000000000000000000000000"}`
	tests := []struct {
		name  string
		where string
		want  int
	}{
		{"by id", idQuery, 1},
		{"name case-sensitive", `{"objectId":"` + fixtureID + `","name":{"$regex":"\\Qfixture\\E"}}`, 0},
		{"name matches exact case", `{"objectId":"` + fixtureID + `","name":{"$regex":"\\QFixture\\E"}}`, 1},
		{"name i option", `{"objectId":"` + fixtureID + `","name":{"$regex":"fixture","$options":"i"}}`, 1},
		{"exists fakeKey", `{"objectId":"` + fixtureID + `","fakeKey":{"$exists":true}}`, 0},
		{"doesNotExist createdAt", `{"objectId":"` + fixtureID + `","createdAt":{"$exists":false}}`, 0},
		{"createdAt lt epoch", `{"objectId":"` + fixtureID + `","createdAt":{"$lt":` + epoch + `}}`, 0},
		{"createdAt gt epoch", `{"objectId":"` + fixtureID + `","createdAt":{"$gt":` + epoch + `}}`, 1},
		{"createdAt lt now", `{"objectId":"` + fixtureID + `","createdAt":{"$lt":` + now + `}}`, 1},
		{"createdAt gt now", `{"objectId":"` + fixtureID + `","createdAt":{"$gt":` + now + `}}`, 0},
		{"and existing and missing id", `{"$and":[` + idQuery + `,` + missing + `]}`, 0},
		{"or existing and missing id", `{"$or":[` + idQuery + `,` + missing + `]}`, 1},

		// Docs examples.
		{"equalTo attr.type", `{"attr.type":"private"}`, 1},
		{"matches language", `{"language":{"$regex":"[\\u4e00-\\u9fa5]"}}`, 1},
		{"startsWith name", `{"name":{"$regex":"^\\Q教育\\E"}}`, 1},
		{"contains name", `{"name":{"$regex":"\\Q教育\\E"}}`, 1},
		{"not contains name", `{"name":{"$regex":"^((?!教育).)*$","$options":"i"}}`, 2},
		{"containedIn m", `{"m":{"$in":["xwang"]}}`, 1},
		{"doesNotExist lm", `{"lm":{"$exists":false}}`, 1},
		{"exists lm", `{"lm":{"$exists":true}}`, 2},
		{"contains keywords and lessThan age", `{"keywords":{"$regex":"\\Q教育\\E"},"age":{"$lt":18}}`, 1},
		{"or age or keywords", `{"$or":[{"age":{"$gt":18}},{"keywords":{"$regex":"\\Q教育\\E"}}]}`, 2},
		{"default rule", `{"m":"leeyeh"}`, 1},
		{"system conversations", `{"sys":true}`, 1},
		{"chat rooms", `{"tr":true}`, 1},
		{"lm after", `{"lm":{"$gte":{"__type":"Date","iso":"2018-01-17T04:20:00.000Z"}}}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchIDs(t, docs, tt.where); len(got) != tt.want {
				t.Fatalf("where %s matched %q, want %d results", tt.where, got, tt.want)
			}
		})
	}
}
