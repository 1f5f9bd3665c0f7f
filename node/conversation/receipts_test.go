package conversation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

func receiptReq(cid, msg string) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(4),
		DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg), R: proto.Bool(true)}}
}

func ackReq(cid string, from, to int64) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_ack.Enum(), AckMessage: &pb.AckCommand{Cid: proto.String(cid), Fromts: proto.Int64(from), Tots: proto.Int64(to)}}
}

func readReq(cid string, ts int64, mid string) *pb.GenericCommand {
	t := &pb.ReadTuple{Cid: proto.String(cid), Timestamp: proto.Int64(ts)}
	if mid != "" {
		t.Mid = proto.String(mid)
	}
	return &pb.GenericCommand{Cmd: pb.CommandType_read.Enum(), ReadMessage: &pb.ReadCommand{Convs: []*pb.ReadTuple{t}}}
}

func TestConversationReceipts(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	h.caller("Jerry", 3) // Jerry's second device
	cid := h.start(tom, "Jerry")
	h.clock.Advance(time.Second)
	plain := h.do(tom, directReq(cid, "no receipt")).GetAckMessage()
	h.clock.Advance(time.Second)
	withR := h.do(tom, receiptReq(cid, "receipt please")).GetAckMessage()
	h.d.take()

	// No ackAt before a real delivery ack.
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if logs[0].AckAt != nil || logs[1].AckAt != nil {
		t.Fatalf("ackAt without ack %v", logs)
	}
	h.clock.Advance(time.Second)
	if resp := h.do(jerry, ackReq(cid, plain.GetT(), withR.GetT())); resp != nil {
		t.Fatalf("receiver ack answered: %v", resp)
	}
	got := h.d.take()
	if len(got) != 1 || got[0].client != "Tom" || got[0].cmd.GetCmd() != pb.CommandType_rcp {
		t.Fatalf("delivery receipt pushes %v", pushKeys(got))
	}
	rcp := got[0].cmd.GetRcpMessage()
	if rcp.GetId() != withR.GetUid() || rcp.GetCid() != cid || rcp.GetFrom() != "Jerry" || rcp.Read != nil ||
		rcp.GetT() != h.clock.Now().UnixMilli() || got[0].cmd.GetServerTs() == 0 {
		t.Fatalf("rcp %v", got[0].cmd)
	}
	logs = h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if logs[0].GetAckAt() != rcp.GetT() || logs[1].GetAckAt() != rcp.GetT() || logs[1].ReadAt != nil {
		t.Fatalf("ackAt %v", logs)
	}
	mr := h.do(tom, convReq(pb.OpType_max_read, &pb.ConvCommand{Cid: proto.String(cid)})).GetConvMessage()
	if mr.GetMaxAckTimestamp() != withR.GetT() || mr.MaxReadTimestamp != nil {
		t.Fatalf("max_read %v", mr)
	}

	// Read: unread push to Jerry's other device, read receipt to Tom.
	h.clock.Advance(time.Second)
	if resp := h.do(jerry, readReq(cid, withR.GetT(), withR.GetUid())); resp != nil {
		t.Fatalf("read answered: %v", resp)
	}
	got = h.d.take()
	if want := []string{"Jerry/3:unread", "Tom/1:rcp"}; !slices.Equal(pushKeys(got), want) {
		t.Fatalf("read pushes %v", pushKeys(got))
	}
	for _, p := range got {
		switch p.client {
		case "Jerry":
			u := p.cmd.GetUnreadMessage()
			if len(u.Convs) != 1 || u.Convs[0].GetUnread() != 0 || u.Convs[0].Mentioned != nil || u.Convs[0].GetMid() != withR.GetUid() || u.NotifTime == nil {
				t.Fatalf("unread push %v", u)
			}
		case "Tom":
			r := p.cmd.GetRcpMessage()
			if !r.GetRead() || r.GetId() != withR.GetUid() || r.GetT() != withR.GetT() || r.GetFrom() != "Jerry" {
				t.Fatalf("read receipt %v", r)
			}
		}
	}
	mr = h.do(tom, convReq(pb.OpType_max_read, &pb.ConvCommand{Cid: proto.String(cid), QueryAllMembers: proto.Bool(true)})).GetConvMessage()
	if mr.GetMaxReadTimestamp() != withR.GetT() || len(mr.MaxReadTuples) != 1 || mr.MaxReadTuples[0].GetPid() != "Jerry" ||
		mr.MaxReadTuples[0].MaxAckTimestamp == nil || mr.MaxReadTuples[0].MaxReadTimestamp == nil {
		t.Fatalf("max_read all %v", mr)
	}
	logs = h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if logs[1].ReadAt == nil {
		t.Fatalf("readAt missing %v", logs)
	}
	// Tom offline: the receipts wait as reliable notifications.
	ns, _, err := h.e.Notifications(t.Context(), testApp, "Tom", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var rcps []map[string]any
	for _, n := range ns {
		if n.Cmd == pb.CommandType_rcp {
			rcps = append(rcps, n.JSMap())
		}
	}
	if len(rcps) != 2 || rcps[0]["id"] != withR.GetUid() || rcps[1]["read"] != true || rcps[0]["cmd"] != "rcp" {
		t.Fatalf("rcp notifications %v", rcps)
	}
	if _, ok := rcps[0]["op"]; ok {
		t.Fatalf("rcp notification has op: %v", rcps[0])
	}
}

func TestConversationUnread(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry", "Mary")
	other := h.start(tom, "Mary")
	h.send(tom, other, "for mary only")
	var sent []*pb.AckCommand
	for i, msg := range []string{"one", "two", "three"} {
		req := directReq(cid, msg)
		if i == 1 {
			req.DirectMessage.MentionPids = []string{"Jerry"}
		}
		h.clock.Advance(time.Second)
		sent = append(sent, h.do(tom, req).GetAckMessage())
	}
	u, err := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0)
	if err != nil || u == nil || len(u.Convs) != 1 {
		t.Fatalf("summary %v %v", u, err)
	}
	tu := u.Convs[0]
	if tu.GetCid() != cid || tu.GetUnread() != 3 || !tu.GetMentioned() || tu.GetData() != "three" || tu.GetFrom() != "Tom" ||
		tu.GetTimestamp() == 0 || tu.GetMid() == "" || tu.BinaryMsg != nil || u.GetNotifTime() != h.clock.Now().UnixMilli() {
		t.Fatalf("tuple %v", u)
	}
	if u, _ := h.e.UnreadSummary(t.Context(), testApp, "Tom", 0); u != nil {
		t.Fatalf("own messages are unread: %v", u)
	}
	// Nothing changed since the last summary.
	if again, _ := h.e.UnreadSummary(t.Context(), testApp, "Jerry", u.GetNotifTime()); again != nil {
		t.Fatalf("unchanged summary %v", again)
	}
	// Read up to "one": "two" (which mentions Jerry) and "three" are left.
	h.clock.Advance(time.Second)
	h.do(Caller{App: testApp, ClientID: "Jerry", Session: 9}, readReq(cid, sent[0].GetT(), ""))
	partial, _ := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0)
	if partial == nil || partial.Convs[0].GetUnread() != 2 || !partial.Convs[0].GetMentioned() {
		t.Fatalf("summary after reading one of three %v", partial)
	}
	h.clock.Advance(time.Second)
	h.do(Caller{App: testApp, ClientID: "Jerry", Session: 9}, readReq(cid, h.clock.Now().UnixMilli(), ""))
	again, _ := h.e.UnreadSummary(t.Context(), testApp, "Jerry", u.GetNotifTime())
	if again == nil || again.Convs[0].GetUnread() != 0 || again.Convs[0].Mentioned != nil {
		t.Fatalf("summary after read %v", again)
	}
	if u, _ := h.e.UnreadSummary(t.Context(), testApp, "Jerry", 0); u != nil {
		t.Fatalf("summary after read without cursor %v", u)
	}
	// Members added later do not inherit older messages as unread.
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"William"}}))
	if u, _ := h.e.UnreadSummary(t.Context(), testApp, "William", 0); u != nil {
		t.Fatalf("new member unread %v", u)
	}
}

// checkFor polls f until it returns nil or the deadline passes.
func checkFor(t testing.TB, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

func TestConversationReceiverAckLoop(t *testing.T) {
	h := newHarness(t)
	h.e.Start(t.Context())
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	var acks []*pb.AckCommand
	for i := range 20 {
		h.clock.Advance(time.Millisecond)
		req := receiptReq(cid, "m")
		req.DirectMessage.R = proto.Bool(i%2 == 0)
		acks = append(acks, h.do(tom, req).GetAckMessage())
	}
	h.d.take()
	for _, a := range acks {
		if resp, err := h.e.Handle(t.Context(), jerry, ackReq(cid, a.GetT(), a.GetT())); resp != nil || err != nil {
			t.Fatalf("ack: %v %v", resp, err)
		}
	}
	var got []delivered
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got = append(got, h.d.take()...)
		if len(got) < 10 {
			return errors.New("waiting for 10 receipts")
		}
		return nil
	})
	for i, p := range got {
		if p.cmd.GetRcpMessage().GetId() != acks[2*i].GetUid() {
			t.Fatalf("receipt %d for %v", i, p.cmd.GetRcpMessage())
		}
	}
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		s, err := h.e.loadClientState(testApp, "Jerry", cid)
		if err != nil || s.AckTs != acks[len(acks)-1].GetT() {
			return fmt.Errorf("ack pointer %d, %v", s.AckTs, err)
		}
		return nil
	})
}

func TestConversationGroupReadReceipts(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	mary := h.caller("Mary", 3)
	groupTom := tom
	groupTom.ConfigBitmap |= configGroupRcp
	cid := h.start(tom, "Jerry", "Mary")
	h.clock.Advance(time.Second)
	plain := h.do(jerry, receiptReq(cid, "jerry, no group receipts")).GetAckMessage()
	h.clock.Advance(time.Second)
	wanted := h.do(groupTom, receiptReq(cid, "tom wants group receipts")).GetAckMessage()
	h.d.take()
	h.do(mary, readReq(cid, wanted.GetT(), ""))
	var rcps []delivered
	for _, p := range h.d.take() {
		if p.cmd.GetCmd() == pb.CommandType_rcp {
			rcps = append(rcps, p)
		}
	}
	if len(rcps) != 1 || rcps[0].client != "Tom" || rcps[0].cmd.GetRcpMessage().GetId() != wanted.GetUid() || !rcps[0].cmd.GetRcpMessage().GetRead() {
		t.Fatalf("group read receipts %v (plain %s)", pushKeys(rcps), plain.GetUid())
	}
}

// TestReceiverAcksCommitShardsConcurrently acks, in one batch, messages of
// four clients in four client shards: the batch is committed one shard per
// commit, two of them in flight at once (so their durable commits can share
// a WAL sync), and every client's delivery pointer is recorded.
func TestReceiverAcksCommitShardsConcurrently(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	var receivers []Caller
	shards := map[uint16]bool{}
	for i := 0; len(receivers) < 4; i++ {
		name := fmt.Sprintf("r%d", i)
		if s := (testShards{}).ClientShard(testApp, name); !shards[s] {
			shards[s] = true
			receivers = append(receivers, h.caller(name, SessionID(10+i)))
		}
	}
	var jobs []ackJob
	want := map[string]int64{}
	for _, r := range receivers {
		cid := h.start(tom, r.ClientID)
		h.clock.Advance(time.Millisecond)
		ack := h.do(tom, receiptReq(cid, "hello")).GetAckMessage()
		jobs = append(jobs, ackJob{c: r, am: ackReq(cid, ack.GetT(), ack.GetT()).GetAckMessage()})
		want[r.ClientID+"/"+cid] = ack.GetT()
	}
	h.d.take()

	// Every commit touches one shard; the first two wait until both are in
	// flight, which only concurrent commits achieve.
	var mu sync.Mutex
	multi, inFlight := 0, 0
	both := make(chan struct{})
	fail := func(b *store.Batch) error {
		seen := map[uint16]bool{}
		for _, op := range b.Ops() {
			s, _ := store.ShardOf(op.Key)
			seen[s] = true
		}
		mu.Lock()
		if len(seen) > 1 {
			multi++
		}
		inFlight++
		if inFlight == 2 {
			close(both)
		}
		n := inFlight
		mu.Unlock()
		if n <= 2 {
			select {
			case <-both:
			case <-time.After(5 * time.Second):
				return errors.New("shard commits ran one after the other")
			}
		}
		return nil
	}
	h.kv.fail.Store(&fail)
	err := h.e.processAcks(context.Background(), jobs)
	h.kv.fail.Store(nil)
	if err != nil {
		t.Fatal(err)
	}
	if multi > 0 || inFlight < len(receivers) {
		t.Fatalf("%d of %d commits touched several shards", multi, inFlight)
	}
	for key, ts := range want {
		client, cid, _ := strings.Cut(key, "/")
		s, err := h.e.loadClientState(testApp, client, cid)
		if err != nil || s.AckTs != ts {
			t.Errorf("%s: ack pointer %d, want %d (%v)", key, s.AckTs, ts, err)
		}
	}
	// The senders' delivery receipts went out after the commit.
	if got := h.d.take(); len(got) != len(receivers) {
		t.Fatalf("receipts %v", pushKeys(got))
	}
}

// TestConversationAcksAfterCrash crashes the machine under a store (Pebble
// on a memory file system that keeps only what was synced, and any part of
// what was not): receiver acks and reads are committed without an fsync of
// their own, so those after the last synced commit may be lost, but the
// state after the crash is never older than what was synced and no
// acknowledged message is lost. The store's flusher, which syncs such
// writes within a bound (TestStoreNoSyncFlushed), is off, so that the crash
// certainly comes before it.
func TestConversationAcksAfterCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	clock := &testClock{now: time.UnixMilli(1_700_000_000_000)}
	h := openHarnessStore(t, store.Config{Dir: "db", FS: fs, CacheSize: 1 << 20, NoSyncFlushDelay: -1}, newTestDeliverer(), clock)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	var sent []*pb.AckCommand
	send := func() *pb.AckCommand {
		clock.Advance(time.Millisecond)
		a := h.do(tom, receiptReq(cid, fmt.Sprintf("m%d", len(sent)))).GetAckMessage()
		sent = append(sent, a)
		return a
	}
	m0, m1 := send(), send()
	h.do(jerry, ackReq(cid, m0.GetT(), m1.GetT()))
	h.do(jerry, readReq(cid, m0.GetT(), m0.GetUid()))
	m2 := send() // synced: it syncs the ack and the read before it too
	h.do(jerry, ackReq(cid, m2.GetT(), m2.GetT()))
	h.do(jerry, readReq(cid, m1.GetT(), m1.GetUid()))
	if s, err := h.e.loadClientState(testApp, "Jerry", cid); err != nil || s.AckTs != m2.GetT() || s.ReadTs != m1.GetT() {
		t.Fatalf("before the crash: ack %d read %d (%v)", s.AckTs, s.ReadTs, err)
	}

	// check opens the store a crash left and checks what the acks left.
	check := func(crashed *vfs.MemFS, exact bool) {
		t.Helper()
		c := openHarnessStore(t, store.Config{Dir: "db", FS: crashed, CacheSize: 1 << 20, NoSyncFlushDelay: -1}, newTestDeliverer(), clock)
		defer c.close()
		logs := c.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
		if len(logs) != len(sent) {
			t.Fatalf("%d messages after the crash, want %d", len(logs), len(sent))
		}
		s, err := c.e.loadClientState(testApp, "Jerry", cid)
		if err != nil {
			t.Fatal(err)
		}
		// Synced: the ack of m0..m1 and the read of m0. Maybe kept: the ack
		// of m2 and the read of m1.
		if s.AckTs != m1.GetT() && (exact || s.AckTs != m2.GetT()) {
			t.Fatalf("ack pointer %d after the crash, want %d (synced) or %d", s.AckTs, m1.GetT(), m2.GetT())
		}
		if s.ReadTs != m0.GetT() && (exact || s.ReadTs != m1.GetT()) {
			t.Fatalf("read pointer %d after the crash, want %d (synced) or %d", s.ReadTs, m0.GetT(), m1.GetT())
		}
		ns, _, err := c.e.Notifications(t.Context(), testApp, "Tom", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		rcps := 0
		for _, n := range ns {
			if n.Cmd == pb.CommandType_rcp {
				rcps++
			}
		}
		// Delivery receipts of m0 and m1 and the read receipt of m0 were
		// synced; the m2 delivery and m1 read receipts may be kept.
		if rcps < 3 || rcps > 5 || exact && rcps != 3 {
			t.Fatalf("%d receipts after the crash", rcps)
		}
		// A read behind the pointer leaves it where it is.
		c.do(jerry, readReq(cid, m0.GetT()-1, ""))
		if after, err := c.e.loadClientState(testApp, "Jerry", cid); err != nil || after.ReadTs != s.ReadTs {
			t.Fatalf("read pointer moved back from %d to %d (%v)", s.ReadTs, after.ReadTs, err)
		}
	}
	// Only what was synced survives: the last ack and read are lost.
	check(fs.CrashClone(vfs.CrashCloneCfg{}), true)
	// Any part of what was not synced may survive.
	for seed := range uint64(8) {
		check(fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 1))}), false)
	}
}

// TestConversationMsgHeadDecode checks that a stored message, JSON or
// binary (a later release's, msgcodec.go), decodes to the same id, sender, timestamp,
// receipt flags and recipients without its content (decodeMessageHead),
// which receiver acks and reads decode, as through decodeMessage.
func TestConversationMsgHeadDecode(t *testing.T) {
	h := newHarness(t)
	for _, m := range []*message{
		{ID: "m1", From: "Tom", Ts: 1_700_000_000_001, Data: `{"_lctext":"\"r\":true"}`},
		{ID: "m2", From: "Jerry", Ts: 1_700_000_000_002, Bin: []byte{1, 2}, IsBin: true, Receipt: true, GroupRcp: true,
			MentionPids: []string{"Tom"}, PatchTs: 5, To: []string{"Tom", "Mary"}},
	} {
		b := h.e.st.NewBatch()
		h.e.putMessage(b, testApp, "c1", m)
		for _, v := range [][]byte{b.Ops()[0].Value, encodeMessage(m)} {
			full, err := decodeMessage(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeMessageHead(v)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != full.ID || got.From != full.From || got.Ts != full.Ts || got.Receipt != full.Receipt || got.GroupRcp != full.GroupRcp ||
				!slices.Equal(got.To, full.To) || full.ID != m.ID || full.Receipt != m.Receipt || full.GroupRcp != m.GroupRcp || !slices.Equal(full.To, m.To) {
				t.Fatalf("acked message %+v, stored %+v", got, m)
			}
		}
		b.Close()
	}
}
