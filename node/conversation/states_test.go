package conversation

import (
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// TestConversationKnownStates checks that the client states the engine
// keeps for acks and reads (states.go) never stand in for a state written
// some other way: by a conversation command in the conversation's shard or
// through the outbox (forgetStates), by another coordinator (the epoch) or
// while this node does not coordinate the conversation. Each case fails
// when its protection is removed.
func TestConversationKnownStates(t *testing.T) {
	// The member's state is written through the outbox (its client shard
	// is another), in the conversation's shard with Tom's state through the
	// outbox, or in the conversation's shard with every other write.
	for _, where := range []string{"outbox", "mixed", "local"} {
		t.Run("server API read pointers, "+where, func(t *testing.T) {
			h := newHarness(t)
			tom := h.caller("Tom", 1)
			member, cid := "Jerry", ""
			if where == "local" {
				for i := 0; h.e.shards.ClientShard(testApp, member) != h.e.shards.ClientShard(testApp, "Tom"); i++ {
					member = "Jerry" + strconv.Itoa(i)
				}
			}
			for i := 0; ; i++ {
				cid = "known-" + strconv.Itoa(i)
				own := h.e.shards.ConvShard(testApp, cid)
				if (own == h.e.shards.ClientShard(testApp, member)) == (where != "outbox") &&
					(own == h.e.shards.ClientShard(testApp, "Tom")) == (where == "local") {
					break
				}
			}
			if _, err := h.e.ImportConversation(t.Context(), testApp, ImportedConversation{ID: cid, Creator: "Tom",
				Members: []string{"Tom", member}, Created: 1, Updated: 2}); err != nil {
				t.Fatal(err)
			}
			jerry := h.caller(member, 2)
			var last int64
			for i := range 3 {
				h.clock.Advance(time.Second)
				_, last = h.send(tom, cid, "m"+strconv.Itoa(i))
			}
			h.clock.Advance(time.Second)
			h.do(jerry, readReq(cid, last, ""))
			if err := h.e.SetUnread(t.Context(), testApp, cid, map[string]int{member: 2}); err != nil {
				t.Fatal(err)
			}
			if u, err := h.e.UnreadCount(t.Context(), testApp, member, cid); err != nil || u != 2 {
				t.Fatalf("unread %d (%v) after SetUnread, want 2", u, err)
			}
			h.clock.Advance(time.Second)
			h.do(jerry, readReq(cid, last, ""))
			if u, err := h.e.UnreadCount(t.Context(), testApp, member, cid); err != nil || u != 0 {
				t.Fatalf("unread %d (%v) after reading everything again, want 0", u, err)
			}
		})
	}

	// Another node moves Jerry's delivery pointer past what this node
	// knows (while it coordinated the conversation); an older ack here must
	// not set it back.
	for _, how := range []string{"lease taken back", "not coordinating"} {
		t.Run(how, func(t *testing.T) {
			h, tom, jerry, cid, ts := threeToJerry(t)
			h.do(jerry, ackReq(cid, ts[0], ts[0]))
			b := h.st.NewBatch()
			b.MergeFields(h.e.clientKey(testApp, "Jerry", store.FamClientState).Str(cid).Bytes(),
				[]store.Field{{Name: fieldAckTs, Value: binary.AppendVarint(nil, ts[2])}})
			if err := h.st.Commit(b); err != nil {
				t.Fatal(err)
			}
			if how == "lease taken back" {
				h.e.ForgetTimestamps()
			} else {
				h.lostLease.Store(true)
			}
			h.do(jerry, ackReq(cid, ts[1], ts[1]))
			mr := h.do(tom, convReq(pb.OpType_max_read, &pb.ConvCommand{Cid: proto.String(cid)})).GetConvMessage()
			if mr.GetMaxAckTimestamp() != ts[2] {
				t.Fatalf("delivery pointer %d, want %d (set by the other node)", mr.GetMaxAckTimestamp(), ts[2])
			}
		})
	}
}

// TestConversationStateDiffFromBase checks that the fields written for a
// kept state (compared with its values, changedSinceBase) are those written
// for the same state loaded from its stored fields value (changedFields).
func TestConversationStateDiffFromBase(t *testing.T) {
	vals := []int64{0, 1, 1_700_000_000_000}
	for i := range 3 * 3 * 3 * 3 * 3 { // every combination of vals
		var was, now clientState
		n := i
		for _, p := range []*int64{&was.ReadTs, &was.AckTs, &now.ReadTs, &now.AckTs, &now.Changed} {
			*p = vals[n%len(vals)]
			n /= len(vals)
		}
		was.Changed, was.ReadAt, now.AckAt = 5, 7, was.AckAt
		fromStored := now
		fromStored.stored = store.EncodeFields(was.fields())
		want := changedFields(fromStored.stored, fromStored.fields(), isClientStateField)
		fromBase := now
		fromBase.base, fromBase.hasBase = was.values(), true
		got := fromBase.changedSinceBase()
		if len(got) != len(want) {
			t.Fatalf("was %+v now %+v: fields %v, want %v", was, now, got, want)
		}
		for j := range got {
			if got[j].Name != want[j].Name || got[j].Deleted != want[j].Deleted || string(got[j].Value) != string(want[j].Value) {
				t.Fatalf("was %+v now %+v: fields %v, want %v", was, now, got, want)
			}
		}
	}
}

// TestConversationKnownStateDroppedAfterFailedCommit: when the commit of an
// ack or a read fails, the engine cannot know whether the store took it
// (a quorum write that timed out may still commit), so it forgets the
// client's state rather than keep the one it had: here the failed commit
// did land, and a later, older ack or read must find the landed pointer and
// leave it, not move it back from a stale kept state. Fails when a failed
// commit leaves the kept state in place.
func TestConversationKnownStateDroppedAfterFailedCommit(t *testing.T) {
	for _, kind := range []string{"read", "ack"} {
		t.Run(kind, func(t *testing.T) {
			h, tom, jerry, cid, ts := threeToJerry(t)
			req := func(i int) *pb.GenericCommand {
				if kind == "read" {
					return readReq(cid, ts[i], "")
				}
				return ackReq(cid, ts[i], ts[i])
			}
			pointer := func() int64 {
				mr := h.do(tom, convReq(pb.OpType_max_read, &pb.ConvCommand{Cid: proto.String(cid)})).GetConvMessage()
				if kind == "read" {
					return mr.GetMaxReadTimestamp()
				}
				return mr.GetMaxAckTimestamp()
			}
			h.do(jerry, req(0)) // kept: the pointer at m0

			// The next one's commit lands, then reports a failure.
			inDoubt := func(b *store.Batch) error {
				for _, r := range statesIn(b.Ops()) {
					if r[1] == "Jerry" {
						if err := h.st.Commit(b); err != nil {
							return err
						}
						return errors.New("in doubt: the write may have committed")
					}
				}
				return nil
			}
			h.kv.fail.Store(&inDoubt)
			_, _ = h.e.Handle(t.Context(), jerry, req(2))
			h.kv.fail.Store(nil)
			if got := pointer(); got != ts[2] {
				t.Fatalf("pointer %d after the in-doubt commit, want %d (it landed)", got, ts[2])
			}

			h.clock.Advance(time.Second)
			h.do(jerry, req(1)) // older than what landed
			if got := pointer(); got != ts[2] {
				t.Fatalf("pointer %d after an older %s, want %d: a stale kept state set it back", got, kind, ts[2])
			}
		})
	}
}

// threeToJerry starts a harness where Tom sent Jerry three messages, a
// second apart, in a new conversation; it returns their timestamps.
func threeToJerry(t *testing.T) (h *harness, tom, jerry Caller, cid string, ts [3]int64) {
	t.Helper()
	h = newHarness(t)
	tom, jerry = h.caller("Tom", 1), h.caller("Jerry", 2)
	cid = h.start(tom, "Jerry")
	for i := range ts {
		h.clock.Advance(time.Second)
		_, ts[i] = h.send(tom, cid, "m"+strconv.Itoa(i))
	}
	return h, tom, jerry, cid, ts
}
