package conversation

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// TestConversationAckWithoutScan checks when a receiver ack may skip
// reading the messages it covers (plainRange) and that it never skips one
// asking for a receipt: each case leaves a receipt message (or a bound
// the ack must not pass) that only a scan finds, behind one of
// recentMsgs' conditions, and fails when that condition is removed.
func TestConversationAckWithoutScan(t *testing.T) {
	// otherNodeMessage stores a message asking for a receipt the way
	// another coordinator's write arrives: in the store, not through this
	// engine's putMessage.
	otherNodeMessage := func(h *harness, cid, from string, ts int64) string {
		m := &message{ID: "other" + time.UnixMilli(ts).Format("150405.000"), From: from, Ts: ts, Data: "x", Receipt: true}
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b := h.st.NewBatch()
		b.Set(h.e.msgKey(testApp, cid, m.Ts, m.ID), v)
		if err := h.st.Commit(b); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	// ack acks [from, to] as Jerry and returns the receipts pushed and
	// Jerry's delivery pointer as Tom sees it.
	ack := func(h *harness, cid string, from, to int64) ([]string, int64) {
		tom := Caller{App: testApp, ClientID: "Tom", Session: 1, ConfigBitmap: 187}
		jerry := Caller{App: testApp, ClientID: "Jerry", Session: 2, ConfigBitmap: 187}
		h.d.take()
		if resp := h.do(jerry, ackReq(cid, from, to)); resp != nil {
			t.Fatalf("receiver ack answered: %v", resp)
		}
		var rcps []string
		for _, p := range h.d.take() {
			if p.cmd.GetCmd() == pb.CommandType_rcp {
				rcps = append(rcps, p.cmd.GetRcpMessage().GetId())
			}
		}
		mr := h.do(tom, convReq(pb.OpType_max_read, &pb.ConvCommand{Cid: proto.String(cid)})).GetConvMessage()
		return rcps, mr.GetMaxAckTimestamp()
	}
	setup := func(t *testing.T) (*harness, Caller, string) {
		h := newHarness(t)
		tom := h.caller("Tom", 1)
		h.caller("Jerry", 2)
		cid := h.start(tom, "Jerry")
		h.clock.Advance(time.Second)
		return h, tom, cid
	}

	t.Run("plain", func(t *testing.T) {
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		h.clock.Advance(time.Second)
		_, t2 := h.send(tom, cid, "two")
		if !h.e.plainRange(testApp, cid, t1, t2) {
			t.Fatal("an ack of plain messages sent through the engine scans them")
		}
		if rcps, at := ack(h, cid, t1, t2); len(rcps) != 0 || at != t2 {
			t.Fatalf("receipts %v, delivery pointer %d, want none and %d", rcps, at, t2)
		}
	})
	t.Run("read", func(t *testing.T) {
		// A read of plain messages sends no read receipt; one of a range
		// holding a receipt message another node wrote sends it.
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		h.clock.Advance(2 * time.Second)
		_, t2 := h.send(tom, cid, "two")
		jerry := Caller{App: testApp, ClientID: "Jerry", Session: 2, ConfigBitmap: 187}
		read := func(ts int64) []string {
			h.d.take()
			h.do(jerry, readReq(cid, ts, ""))
			var rcps []string
			for _, p := range h.d.take() {
				if p.cmd.GetCmd() == pb.CommandType_rcp && p.cmd.GetRcpMessage().GetRead() {
					rcps = append(rcps, p.cmd.GetRcpMessage().GetId())
				}
			}
			return rcps
		}
		if rcps := read(t1); len(rcps) != 0 {
			t.Fatalf("read receipts %v for plain messages", rcps)
		}
		id := otherNodeMessage(h, cid, "Tom", t1+1000)
		h.e.ForgetTimestamps()
		if rcps := read(t2); len(rcps) != 1 || rcps[0] != id {
			t.Fatalf("read receipts %v, want [%s]", rcps, id)
		}
	})
	t.Run("receipt in range", func(t *testing.T) {
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		h.clock.Advance(time.Second)
		withR := h.do(tom, receiptReq(cid, "receipt please")).GetAckMessage()
		h.clock.Advance(time.Second)
		_, t3 := h.send(tom, cid, "three")
		if rcps, at := ack(h, cid, t1, t3); len(rcps) != 1 || rcps[0] != withR.GetUid() || at != t3 {
			t.Fatalf("receipts %v, delivery pointer %d, want [%s] and %d", rcps, at, withR.GetUid(), t3)
		}
	})
	t.Run("written before the entry started", func(t *testing.T) {
		h, tom, cid := setup(t)
		ts := h.clock.Now().UnixMilli()
		id := otherNodeMessage(h, cid, "Tom", ts)
		h.clock.Advance(time.Second)
		_, t1 := h.send(tom, cid, "one")
		if rcps, at := ack(h, cid, ts, t1); len(rcps) != 1 || rcps[0] != id || at != t1 {
			t.Fatalf("receipts %v, delivery pointer %d, want [%s] and %d", rcps, at, id, t1)
		}
	})
	t.Run("another coordinator in between", func(t *testing.T) {
		// This node sent t1 and t2; another node coordinated the shard
		// meanwhile and wrote a message between them (contrived: it stands
		// for any message this node did not note), and this node took the
		// lease back (ForgetTimestamps).
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		h.clock.Advance(2 * time.Second)
		_, t2 := h.send(tom, cid, "two")
		id := otherNodeMessage(h, cid, "Tom", t1+1000)
		h.e.ForgetTimestamps()
		if rcps, at := ack(h, cid, t1+1000, t1+1000); len(rcps) != 1 || rcps[0] != id || at != t1+1000 {
			t.Fatalf("receipts %v, delivery pointer %d, want [%s] and %d", rcps, at, id, t1+1000)
		}
		if t2 <= t1+1000 {
			t.Fatalf("second send at %d, not after the other node's message", t2)
		}
	})
	t.Run("not coordinating", func(t *testing.T) {
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		h.clock.Advance(2 * time.Second)
		h.send(tom, cid, "two")
		id := otherNodeMessage(h, cid, "Tom", t1+1000)
		h.lostLease.Store(true)
		if rcps, at := ack(h, cid, t1+1000, t1+1000); len(rcps) != 1 || rcps[0] != id || at != t1+1000 {
			t.Fatalf("receipts %v, delivery pointer %d, want [%s] and %d", rcps, at, id, t1+1000)
		}
	})
	t.Run("beyond the newest message", func(t *testing.T) {
		h, tom, cid := setup(t)
		_, t1 := h.send(tom, cid, "one")
		if rcps, at := ack(h, cid, t1, t1+5000); len(rcps) != 0 || at != t1 {
			t.Fatalf("receipts %v, delivery pointer %d, want none and %d", rcps, at, t1)
		}
	})
}
