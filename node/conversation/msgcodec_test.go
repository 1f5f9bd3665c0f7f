package conversation

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/wire"
)

// codecMessages are messages of every shape the store keeps.
var codecMessages = []message{
	{ID: newMessageID(1_700_000_000_000), From: "Tom", Ts: 1_700_000_000_000, Data: "hi"},
	{ID: "m", From: "J", Ts: 0},
	{ID: "lc-import", From: "Tom", Ts: -1, Data: `{"_lctype":-1,"_lctext":"x"}`, HasType: true, Type: -1, Receipt: true},
	{ID: "typed0", From: "Tom", Ts: 5, Data: `{"_lctype":0}`, HasType: true},
	{ID: "bin", From: "Jerry", Ts: 1 << 62, Bin: []byte{0, 1, 2, 0xff}, IsBin: true, GroupRcp: true},
	{ID: "emptybin", From: "Jerry", Ts: 7, IsBin: true},
	{ID: "mentions", From: "Tom", Ts: 9, Data: "@all", MentionAll: true, MentionPids: []string{"Jerry", "Mary", ""}},
	{ID: "patched", From: "Tom", Ts: 10, Data: "fixed", PatchTs: 1_700_000_000_999},
	{ID: "sys", From: "Sys", Ts: 11, Data: "to some", To: []string{"Tom", "Jerry"}},
	{ID: "ünïcode ✓", From: "发送者", Ts: 12, Data: "\x00\xff not utf-8"},
}

func TestMessageCodecRoundTrip(t *testing.T) {
	for _, m := range codecMessages {
		v := encodeMessage(&m)
		if v[0] != msgCodecV1 {
			t.Fatalf("record of %q starts with %#x", m.ID, v[0])
		}
		got, err := decodeMessage(v)
		if err != nil {
			t.Fatalf("decode %q: %v", m.ID, err)
		}
		if !reflect.DeepEqual(*got, m) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", m.ID, *got, m)
		}
		// The JSON record (what putMessage writes) decodes to the same
		// message, and so does the new record of it: the two agree.
		legacy, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		old, err := decodeMessage(legacy)
		if err != nil {
			t.Fatalf("decode JSON %q: %v", m.ID, err)
		}
		if !reflect.DeepEqual(*old, m) && m.ID != "ünïcode ✓" { // JSON replaces invalid UTF-8
			t.Fatalf("JSON record of %q:\n got %+v\nwant %+v", m.ID, *old, m)
		}
	}
}

// JSON records exactly as earlier builds (and this one) write them decode.
func TestMessageCodecLegacyJSON(t *testing.T) {
	tests := []struct {
		v    string
		want message
	}{
		{`{"id":"AbC_-0123456789abcdefg","f":"Tom","t":1700000000000,"d":"hi"}`,
			message{ID: "AbC_-0123456789abcdefg", From: "Tom", Ts: 1700000000000, Data: "hi"}},
		{`{"id":"x","f":"J","t":3,"b":"AAH/","ib":true,"r":true,"gr":true}`,
			message{ID: "x", From: "J", Ts: 3, Bin: []byte{0, 1, 0xff}, IsBin: true, Receipt: true, GroupRcp: true}},
		{`{"id":"y","f":"J","t":4,"d":"{\"_lctype\":-2}","ma":true,"mp":["a","b"],"ht":true,"ty":-2,"pt":9,"to":["c"]}`,
			message{ID: "y", From: "J", Ts: 4, Data: `{"_lctype":-2}`, MentionAll: true, MentionPids: []string{"a", "b"},
				HasType: true, Type: -2, PatchTs: 9, To: []string{"c"}}},
		{" \n{\"id\":\"z\",\"f\":\"J\",\"t\":5}", message{ID: "z", From: "J", Ts: 5}},
	}
	for _, tt := range tests {
		got, err := decodeMessage([]byte(tt.v))
		if err != nil {
			t.Fatalf("decode %s: %v", tt.v, err)
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Fatalf("decode %s:\n got %+v\nwant %+v", tt.v, *got, tt.want)
		}
	}
}

// Corrupted records are errors (errMsgRecord for binary ones), never a
// panic: every truncation of every record, unknown flags, left-over bytes,
// lengths and counts past the end.
func TestMessageCodecCorrupted(t *testing.T) {
	for _, m := range codecMessages {
		v := encodeMessage(&m)
		for n := range len(v) {
			if _, err := decodeMessage(v[:n]); err == nil {
				t.Fatalf("%q truncated to %d of %d bytes decoded", m.ID, n, len(v))
			}
		}
		if _, err := decodeMessage(append(slices.Clip(v), 0)); !errors.Is(err, errMsgRecord) {
			t.Fatalf("%q with a byte left over: %v", m.ID, err)
		}
	}
	for name, v := range map[string][]byte{
		"unknown flag":     {msgCodecV1, 0x80, 0x10, 0, 0, 0},
		"id past the end":  {msgCodecV1, 0, 5, 'a'},
		"huge length":      {msgCodecV1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"count past end":   {msgCodecV1, 0x80, 0x08, 0, 0, 0, 0xff, 0xff, 0x03, 1, 'a'},
		"zero count":       {msgCodecV1, 0x80, 0x08, 0, 0, 0, 0},
		"bad varint":       {msgCodecV1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"not JSON":         []byte("garbage"),
		"JSON of the type": []byte(`{"id":5}`),
		"another version":  {0x02, 0},
	} {
		if _, err := decodeMessage(v); err == nil {
			t.Fatalf("%s: decoded", name)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range codecMessages {
		v := encodeMessage(&m)
		f.Add(v)
		f.Add(v[:len(v)/2])
		legacy, _ := json.Marshal(&m)
		f.Add(legacy)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMessage(v)
		if err != nil || len(v) == 0 || v[0] != msgCodecV1 {
			return
		}
		// A binary record that decodes encodes back to a record that
		// decodes to the same message.
		again, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, m)
		}
	})
}

// A store holding records of an earlier build (JSON, with their id index),
// of this build (JSON) and of a later release (binary) reads them together:
// history, receipts of a range ack, the last message of a query.
func TestMessageCodecMixedStore(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.clock.Advance(time.Second)
	oldID, oldTs := h.putOldMessage(cid, "Tom", "from the old build", true)
	h.clock.Advance(time.Second)
	thisAck := h.do(tom, receiptReq(cid, "from this build")).GetAckMessage()
	h.clock.Advance(time.Second)
	newTs := h.clock.Now().UnixMilli()
	newAck := &pb.AckCommand{Uid: proto.String(newMessageID(newTs)), T: proto.Int64(newTs)}
	b := h.st.NewBatch()
	b.Set(h.e.msgKey(testApp, cid, newTs, newAck.GetUid()),
		encodeMessage(&message{ID: newAck.GetUid(), From: "Tom", Ts: newTs, Data: "from a later release", Receipt: true}))
	if err := h.st.Commit(b); err != nil {
		t.Fatal(err)
	}
	if m, err := h.e.lookupMessage(testApp, cid, newAck.GetUid()); err != nil || m == nil || m.Data != "from a later release" {
		t.Fatalf("lookup of the binary record = %+v %v", m, err)
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if len(logs) != 3 || logs[0].GetMsgId() != oldID || logs[0].GetData() != "from the old build" || logs[0].GetTimestamp() != oldTs ||
		logs[1].GetMsgId() != thisAck.GetUid() || logs[1].GetData() != "from this build" ||
		logs[2].GetMsgId() != newAck.GetUid() || logs[2].GetData() != "from a later release" || logs[2].GetTimestamp() != newTs {
		t.Fatalf("history %v", logs)
	}
	h.d.take()
	h.do(jerry, ackReq(cid, oldTs, newAck.GetT()))
	var ids []string
	for _, p := range h.d.take() {
		ids = append(ids, p.cmd.GetRcpMessage().GetId())
	}
	slices.Sort(ids)
	want := []string{newAck.GetUid(), thisAck.GetUid(), oldID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("receipts for %v, want %v", ids, want)
	}
	q := h.query(jerry, queryReq(`{"objectId":"`+cid+`"}`, "", nil, nil, 2))
	if q[0]["msg"] != "from a later release" {
		t.Fatalf("last message %v", q[0])
	}
}

// encodeMessage returns m's record in the binary encoding decodeMessage
// reads (msgcodec.go), which a later release writes.
func encodeMessage(m *message) []byte {
	var flags uint64
	set := func(cond bool, f uint64) {
		if cond {
			flags |= f
		}
	}
	set(m.IsBin, msgFlagIsBin)
	set(m.Receipt, msgFlagReceipt)
	set(m.GroupRcp, msgFlagGroupRcp)
	set(m.MentionAll, msgFlagMentionAll)
	set(m.HasType, msgFlagHasType)
	set(m.Data != "", msgHasData)
	set(len(m.Bin) > 0, msgHasBin)
	set(m.Type != 0, msgHasType)
	set(m.PatchTs != 0, msgHasPatchTs)
	set(len(m.MentionPids) > 0, msgHasMentions)
	set(len(m.To) > 0, msgHasTo)

	e := wire.Enc{B: []byte{msgCodecV1}}
	e.U64(flags)
	e.Str(m.ID)
	e.Str(m.From)
	e.I64(m.Ts)
	if flags&msgHasData != 0 {
		e.Str(m.Data)
	}
	if flags&msgHasBin != 0 {
		e.Bytes(m.Bin)
	}
	if flags&msgHasType != 0 {
		e.I64(m.Type)
	}
	if flags&msgHasPatchTs != 0 {
		e.I64(m.PatchTs)
	}
	if flags&msgHasMentions != 0 {
		e.Strs(m.MentionPids)
	}
	if flags&msgHasTo != 0 {
		e.Strs(m.To)
	}
	return e.B
}

// putMessage writes JSON, which every earlier build reads: a node of this
// release that writes a record its previous release cannot read would break
// sends at every node of that release taking over the conversation during a
// roll or after a rollback (msgcodec.go says when binary records may be
// written).
func TestMessageCodecWritesJSON(t *testing.T) {
	h := newHarness(t)
	b := h.e.st.NewBatch()
	defer b.Close()
	h.e.putMessage(b, testApp, "c1", &message{ID: newMessageID(5), From: "Tom", Ts: 5, Data: "hi"})
	var m message
	if v := b.Ops()[0].Value; json.Unmarshal(v, &m) != nil || m.Data != "hi" {
		t.Fatalf("stored record %q is not JSON", v)
	}
}
