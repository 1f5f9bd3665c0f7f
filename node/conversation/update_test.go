package conversation

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

func updateReq(cid, attr string) *pb.GenericCommand {
	cm := &pb.ConvCommand{Cid: proto.String(cid)}
	if attr != "" {
		cm.Attr = protocol.JSON(attr)
	}
	return convReq(pb.OpType_update, cm)
}

func TestConversationUpdate(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.caller("Tom", 9) // Tom's second device
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()
	h.fail(tom, updateReq("5a5d7433c3422b31ed845e76", ""), protocol.ErrConversationNotFound)
	h.fail(h.caller("Eve", 5), updateReq(cid, `{"name":"x"}`), protocol.ErrConversationUpdateRejected)
	h.fail(tom, updateReq(cid, `{"m":["x"]}`), protocol.ErrConversationUpdateFailed)

	seq := []struct {
		attr     string
		modified string
	}{
		{`{"attr":{"timestamp":1}}`, `{"attr":{"timestamp":1}}`},
		{`{"attr":{"lean":"cloud"}}`, `{"attr":{"lean":"cloud"}}`},
		{`{"attr.lee":"yeh"}`, `{"attr.lee":"yeh"}`},
		{`{"color.text":"#333","count":{"__op":"Increment","amount":2}}`, `{"color.text":"#333","count":2}`},
		{`{"tags":{"__op":"Add","objects":["a","b"]}}`, `{"tags":["a","b"]}`},
		{`{"tags":{"__op":"AddUnique","objects":["b","c"]}}`, `{"tags":["a","b","c"]}`},
		{`{"tags":{"__op":"Remove","objects":["a"]}}`, `{"tags":["b","c"]}`},
		{`{"attr.lean":{"__op":"Delete"}}`, `{"attr.lean":{"__op":"Delete"}}`},
		{`{"when":{"__type":"Date","iso":"2020-05-26T06:42:31.482Z"}}`, `{"when":{"__type":"Date","iso":"2020-05-26T06:42:31.482Z"}}`},
	}
	for _, s := range seq {
		resp := h.do(tom, updateReq(cid, s.attr))
		cm := resp.GetConvMessage()
		if resp.GetOp() != pb.OpType_updated || !iso.MatchString(cm.GetUdate()) || !jsonEqual(cm.GetAttrModified().GetData(), s.modified) {
			t.Fatalf("update %s: %v", s.attr, cm)
		}
		got := h.d.take()
		if want := []string{"Jerry/2:conv/updated", "Tom/9:conv/updated"}; !slices.Equal(pushKeys(got), want) {
			t.Fatalf("update %s: pushes %v", s.attr, pushKeys(got))
		}
		pc := got[0].cmd.GetConvMessage()
		if !jsonEqual(pc.GetAttr().GetData(), s.attr) || pc.GetInitBy() != "Tom" || pc.GetUdate() != cm.GetUdate() ||
			!jsonEqual(pc.GetAttrModified().GetData(), s.modified) || got[0].cmd.GetNotificationType() != 1 {
			t.Fatalf("update %s: push %v", s.attr, pc)
		}
	}
	r, _ := h.e.loadConv(testApp, cid)
	want := map[string]any{
		"name": "n", "attr": map[string]any{"lee": "yeh"}, "color": map[string]any{"text": "#333"},
		"count": 2.0, "tags": []any{"b", "c"}, "when": map[string]any{"__type": "Date", "iso": "2020-05-26T06:42:31.482Z"},
	}
	if !reflect.DeepEqual(r.Columns, want) {
		t.Fatalf("columns %v", r.Columns)
	}
	mute := h.do(tom, convReq(pb.OpType_mute, &pb.ConvCommand{Cid: proto.String(cid)}))
	if mute.GetOp() != pb.OpType_updated || !iso.MatchString(mute.GetConvMessage().GetUdate()) {
		t.Fatalf("mute %v", mute)
	}
	if r, _ := h.e.loadConv(testApp, cid); !slices.Equal(r.Muted, []string{"Tom"}) {
		t.Fatalf("mu %v", r.Muted)
	}
	h.do(tom, convReq(pb.OpType_unmute, &pb.ConvCommand{Cid: proto.String(cid)}))
	if r, _ := h.e.loadConv(testApp, cid); len(r.Muted) != 0 {
		t.Fatalf("mu after unmute %v", r.Muted)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestConversationUpdateNotificationShapes(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	h.do(tom, updateReq(cid, `{"n":{"__op":"Increment","amount":1e308}}`))
	h.fail(tom, updateReq(cid, `{"n":{"__op":"Increment","amount":1e308}}`), protocol.ErrConversationUpdateFailed)
	h.fail(tom, updateReq(cid, `{"n":{"__op":"Bogus"}}`), protocol.ErrConversationUpdateFailed)
	h.fail(tom, updateReq(cid, `[1,2]`), protocol.ErrConversationUpdateFailed)
	h.do(tom, updateReq(cid, `{"attr.x":"y"}`))
	ns, _, err := h.e.Notifications(t.Context(), testApp, "Jerry", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := ns[len(ns)-1]
	js, sw := n.JSMap(), n.SwiftMap()
	if js["op"] != "updated" || !reflect.DeepEqual(js["attr"], map[string]any{"data": `{"attr.x":"y"}`}) || js["initBy"] != "Tom" {
		t.Fatalf("JS shape %v", js)
	}
	if !reflect.DeepEqual(sw["attr"], map[string]any{"attr.x": "y"}) || !reflect.DeepEqual(sw["attrModified"], map[string]any{"attr.x": "y"}) {
		t.Fatalf("Swift shape %v", sw)
	}
}

// FuzzConversationUpdate feeds arbitrary attr documents to conv/update: the
// engine must answer (success or a protocol error) and never panic.
func FuzzConversationUpdate(f *testing.F) {
	for _, s := range []string{`{"a.b.c":1}`, `{"x":{"__op":"Add","objects":[1]}}`, `{"x":{"__op":"Increment"}}`,
		`{"a":{"__op":"Delete"}}`, `{"":1}`, `{"a..b":1}`, `{"m":[]}`, `null`, `{"x":{"__op":"Remove","objects":"no"}}`} {
		f.Add(s)
	}
	h := newHarness(f)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	f.Fuzz(func(t *testing.T, attr string) {
		_, err := h.e.Handle(t.Context(), tom, updateReq(cid, attr))
		var pe *protocol.Error
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("internal error for %q: %v", attr, err)
		}
		h.d.take()
	})
}
