package conversation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// idIndexed reports whether cid has a FamMsgID entry for mid.
func (h *harness) idIndexed(cid, mid string) bool {
	h.t.Helper()
	_, err := h.st.Get(h.e.convKey(testApp, cid, store.FamMsgID).Str(mid).Bytes())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.t.Fatal(err)
	}
	return err == nil
}

// putOldMessage stores a message as a build before ids carried their
// timestamp did: a random id, the record as JSON, and its FamMsgID entry.
func (h *harness) putOldMessage(cid, from, data string, receipt bool) (string, int64) {
	h.t.Helper()
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	mid := base64.RawURLEncoding.EncodeToString(raw[:])
	ts := h.clock.Now().UnixMilli()
	h.clock.Advance(time.Millisecond)
	v := fmt.Sprintf(`{"id":%q,"f":%q,"t":%d,"d":%q,"r":%v}`, mid, from, ts, data, receipt)
	b := h.st.NewBatch()
	b.Set(h.e.msgKey(testApp, cid, ts, mid), []byte(v))
	b.Set(h.e.convKey(testApp, cid, store.FamMsgID).Str(mid).Bytes(), binary.BigEndian.AppendUint64(nil, uint64(ts)))
	if err := h.st.Commit(b); err != nil {
		h.t.Fatal(err)
	}
	return mid, ts
}

func ackMidReq(cid, mid string) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_ack.Enum(), AckMessage: &pb.AckCommand{Cid: proto.String(cid), Mid: proto.String(mid)}}
}

func TestMessageIDCarriesTimestamp(t *testing.T) {
	for _, ts := range []int64{0, 1, 1_700_000_000_000, 1<<62 + 5} {
		mid := newMessageID(ts)
		if !msgID.MatchString(mid) {
			t.Fatalf("id %q is not 22 URL-safe Base64 characters", mid)
		}
		if got, ok := msgIDTs(mid); !ok || got != ts {
			t.Fatalf("msgIDTs(%q) = %d %v, want %d", mid, got, ok, ts)
		}
		if m := (&message{ID: mid, Ts: ts}); m.needsIDIndex() {
			t.Fatalf("a message whose id carries its ts needs an index entry")
		}
		if m := (&message{ID: mid, Ts: ts + 1}); !m.needsIDIndex() {
			t.Fatalf("a message whose id carries another ts needs no index entry")
		}
	}
	for _, mid := range []string{"", "m001", "abc!defghijklmnopqrstu", "0123456789abcdef0123456789abcdef", "AAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, ok := msgIDTs(mid); ok {
			t.Fatalf("msgIDTs(%q) decoded", mid)
		}
		if m := (&message{ID: mid}); !m.needsIDIndex() {
			t.Fatalf("id %q needs an index entry", mid)
		}
	}
}

// A sent message writes no FamMsgID entry, and recall, receipt and delete
// find it by its id.
func TestMessageIDNewWithoutIndex(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	a := h.do(tom, receiptReq(cid, "receipt please")).GetAckMessage()
	mid, ts := a.GetUid(), a.GetT()
	if got, ok := msgIDTs(mid); !ok || got != ts {
		t.Fatalf("id %q carries %d %v, want %d", mid, got, ok, ts)
	}
	if h.idIndexed(cid, mid) {
		t.Fatal("a sent message has a FamMsgID entry")
	}
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.Ts != ts || m.Data != "receipt please" {
		t.Fatalf("lookup = %+v %v", m, err)
	}
	h.d.take()
	h.do(jerry, ackMidReq(cid, mid))
	if got := h.d.take(); len(got) != 1 || got[0].cmd.GetRcpMessage().GetId() != mid {
		t.Fatalf("receipt of an ack by id: %v", pushKeys(got))
	}
	h.do(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Recall: proto.Bool(true)}))
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.PatchTs == 0 || m.Data != recalledContent {
		t.Fatalf("after recall %+v %v", m, err)
	}
	if h.idIndexed(cid, mid) {
		t.Fatal("a patched message got a FamMsgID entry")
	}
	if err := h.e.DeleteMessage(context.Background(), testApp, cid, mid, 0); err != nil {
		t.Fatal(err)
	}
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m != nil {
		t.Fatalf("after delete %+v %v", m, err)
	}
}

// A message stored by a build before ids carried their timestamp is found
// through its FamMsgID entry (the test fails without lookupMessage's
// fallback): recall, receipt, delete and retention work on it.
func TestMessageIDOldStyleFallsBackToIndex(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.clock.Advance(time.Second)
	mid, ts := h.putOldMessage(cid, "Tom", "old", true)
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.Ts != ts || m.Data != "old" {
		t.Fatalf("lookup of an old id = %+v %v", m, err)
	}
	h.d.take()
	h.do(jerry, ackMidReq(cid, mid))
	if got := h.d.take(); len(got) != 1 || got[0].cmd.GetRcpMessage().GetId() != mid {
		t.Fatalf("receipt of an ack by an old id: %v", pushKeys(got))
	}
	h.do(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(ts), Data: proto.String("edited")}))
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.Data != "edited" {
		t.Fatalf("after edit %+v %v", m, err)
	}
	if err := h.e.DeleteMessage(context.Background(), testApp, cid, mid, ts); err != nil {
		t.Fatal(err)
	}
	if h.idIndexed(cid, mid) {
		t.Fatal("a deleted message kept its FamMsgID entry")
	}

	// Retention drops old and new messages and the old ones' entries.
	old, _ := h.putOldMessage(cid, "Tom", "old 2", false)
	newID, _ := h.send(tom, cid, "new")
	h.clock.Advance(time.Second)
	if err := h.e.trimConv(testApp, cid, h.clock.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{old, newID} {
		if m, err := h.e.lookupMessage(testApp, cid, id); err != nil || m != nil {
			t.Fatalf("after trim %q: %+v %v", id, m, err)
		}
	}
	if h.idIndexed(cid, old) {
		t.Fatal("a trimmed message kept its FamMsgID entry")
	}
}

// Imported ids are indexed unless they carry exactly their timestamp.
func TestMessageIDImported(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	carries := newMessageID(1000)
	msgs := []ImportedMessage{
		{ID: "lc-5f1e2d", From: "Tom", Ts: 1000, Data: "a"},
		{ID: newMessageID(999), From: "Tom", Ts: 1001, Data: "b"}, // decodes, to another ts
		{ID: carries, From: "Tom", Ts: 1000, Data: "c"},
	}
	if added, err := h.e.ImportMessages(context.Background(), testApp, cid, msgs); err != nil || added != 3 {
		t.Fatalf("import: %d %v", added, err)
	}
	for i, in := range msgs {
		if m, err := h.e.lookupMessage(testApp, cid, in.ID); err != nil || m == nil || m.Ts != in.Ts || m.Data != in.Data {
			t.Fatalf("lookup of imported %q = %+v %v", in.ID, m, err)
		}
		if want := i < 2; h.idIndexed(cid, in.ID) != want {
			t.Fatalf("imported %q indexed = %v, want %v", in.ID, !want, want)
		}
	}
	if added, err := h.e.ImportMessages(context.Background(), testApp, cid, msgs); err != nil || added != 0 {
		t.Fatalf("import again: %d %v, want every id skipped", added, err)
	}
}

// A will message's id is given before its timestamp: it is indexed and
// found through the index.
func TestMessageIDWill(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	will := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(2),
		DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bye"), Will: proto.Bool(true)}}
	mid := h.do(tom, will).GetAckMessage().GetUid()
	h.clock.Advance(time.Second)
	if err := h.e.SendWill(context.Background(), tom, &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bye")}, mid); err != nil {
		t.Fatal(err)
	}
	if !h.idIndexed(cid, mid) {
		t.Fatal("a will message has no FamMsgID entry")
	}
	m, err := h.e.lookupMessage(testApp, cid, mid)
	if err != nil || m == nil || m.Data != "bye" {
		t.Fatalf("lookup of a will = %+v %v", m, err)
	}
	if got, _ := msgIDTs(mid); got == m.Ts {
		t.Fatalf("the will's id carries its stored ts %d: the test does not cover the index", m.Ts)
	}
	h.do(tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid), Timestamp: proto.Int64(m.Ts), Recall: proto.Bool(true)}))
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m == nil || m.Data != recalledContent {
		t.Fatalf("after recall %+v %v", m, err)
	}
}
