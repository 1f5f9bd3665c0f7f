package client_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
)

func TestClientTypedMessageEncoding(t *testing.T) {
	tests := []struct {
		name string
		msg  client.TypedMessage
		want string
	}{
		{"text", client.TypedMessage{Type: client.TypeText, Text: "hi"}, `{"_lctext":"hi","_lctype":-1}`},
		{"image", client.TypedMessage{Type: client.TypeImage, Text: "cat", Attributes: map[string]any{"location": "SF"},
			File: &client.File{URL: "http://x/a.gif", MetaData: map[string]any{"width": 10.0}}},
			`{"_lcattrs":{"location":"SF"},"_lcfile":{"url":"http://x/a.gif","metaData":{"width":10}},"_lctext":"cat","_lctype":-2}`},
		{"location", client.TypedMessage{Type: client.TypeLocation, Location: &client.Location{Latitude: 31.37, Longitude: 120.96}},
			`{"_lcloc":{"latitude":31.37,"longitude":120.96},"_lctype":-5}`},
		{"custom", client.TypedMessage{Type: 123, Extra: map[string]any{"foo": "bar"}}, `{"_lctype":123,"foo":"bar"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.msg.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Encode = %s, want %s", got, tt.want)
			}
			back, err := client.ParseTypedMessage(got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*back, tt.msg) {
				t.Fatalf("round trip = %+v, want %+v", *back, tt.msg)
			}
		})
	}
	if _, err := (&client.TypedMessage{Type: 1, Extra: map[string]any{"_lctext": "x"}}).Encode(); err == nil {
		t.Fatal("reserved extra key accepted")
	}
	for _, bad := range []string{"hello", `{"a":1}`, `{"_lctype":"x"}`} {
		if _, err := client.ParseTypedMessage(bad); err == nil {
			t.Errorf("ParseTypedMessage(%q) succeeded", bad)
		}
	}
	if m := (&client.Message{Binary: []byte{1}}); m.Binary == nil {
		t.Fatal("unreachable")
	} else if _, err := m.Typed(); err == nil {
		t.Fatal("binary message parsed as typed")
	}
}

func TestClientQueryWhere(t *testing.T) {
	when := time.UnixMilli(1590475351482).UTC()
	var cl *client.IMClient // builders do not touch the client
	tests := []struct {
		name string
		q    *client.ConversationQuery
		want string
	}{
		{"eq", cl.Query().EqualTo("attr.type", "private"), `{"attr.type":"private"}`},
		{"ops merge on one key", cl.Query().GreaterThan("age", 1).LessThanOrEqualTo("age", 18).NotEqualTo("name", "x"),
			`{"age":{"$gt":1,"$lte":18},"name":{"$ne":"x"}}`},
		{"dates", cl.Query().LessThan("createdAt", when), `{"createdAt":{"$lt":{"__type":"Date","iso":"2020-05-26T06:42:31.482Z"}}}`},
		{"in nin all size", cl.Query().ContainedIn("m", "Tom").NotContainedIn("c", "x").ContainsAll("tags", "a", "b").SizeEqualTo("m", 2),
			`{"c":{"$nin":["x"]},"m":{"$in":["Tom"],"$size":2},"tags":{"$all":["a","b"]}}`},
		{"exists", cl.Query().Exists("lm").DoesNotExist("fake"), `{"fake":{"$exists":false},"lm":{"$exists":true}}`},
		{"contains", cl.Query().Contains("name", "a.b"), `{"name":{"$regex":"\\Qa.b\\E"}}`},
		{"starts", cl.Query().StartsWith("name", "教育"), `{"name":{"$regex":"^\\Q教育\\E"}}`},
		{"ends quoted E", cl.Query().EndsWith("name", `x\E`), `{"name":{"$regex":"\\Qx\\E\\\\E\\Q\\E$"}}`},
		{"matches", cl.Query().Matches("name", "^((?!教育).)*$", "i"), `{"name":{"$options":"i","$regex":"^((?!教育).)*$"}}`},
		{"or", client.Or(cl.Query().EqualTo("a", 1), cl.Query().EqualTo("b", 2)), `{"$or":[{"a":1},{"b":2}]}`},
		{"and", client.And(cl.Query().EqualTo("a", 1), cl.Query().Exists("b")), `{"$and":[{"a":1},{"b":{"$exists":true}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.q.Where()
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal([]byte(got), &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("where = %s, want %s", got, tt.want)
			}
		})
	}
}
