package conversation

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

var msgID = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestConversationDirect(t *testing.T) {
	h := newHarness(t)
	tom, tom2 := h.caller("Tom", 1), h.caller("Tom", 7)
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()

	resp := h.do(tom, directReq(cid, "hello"))
	ack := resp.GetAckMessage()
	if resp.GetCmd() != pb.CommandType_ack || resp.GetService() != protocol.ServiceIM || resp.Op != nil || ack.Code != nil ||
		!msgID.MatchString(ack.GetUid()) || ack.GetT() != h.clock.Now().UnixMilli() || ack.GetCid() != cid {
		t.Fatalf("ack %v", resp)
	}
	got := h.d.take()
	if want := []string{"Jerry/2:direct", "Tom/7:direct"}; !slices.Equal(pushKeys(got), want) {
		t.Fatalf("pushes %v", pushKeys(got))
	}
	dm := got[0].cmd.GetDirectMessage()
	if dm.GetCid() != cid || dm.GetId() != ack.GetUid() || dm.GetFromPeerId() != "Tom" || dm.GetTimestamp() != ack.GetT() ||
		dm.GetMsg() != "hello" || dm.BinaryMsg != nil || dm.Transient != nil || dm.MentionAll == nil || dm.GetMentionAll() ||
		dm.ConvType == nil || dm.GetConvType() != convNormal || got[0].cmd.Op != nil || got[0].cmd.GetService() != protocol.ServiceIM {
		t.Fatalf("push %v", dm)
	}

	// Same clock: timestamps still strictly increase.
	_, t2 := h.send(tom2, cid, "two")
	_, t3 := h.send(tom, cid, "three")
	if t2 != ack.GetT()+1 || t3 != t2+1 {
		t.Fatalf("timestamps %d %d %d", ack.GetT(), t2, t3)
	}
	h.d.take()

	// Binary messages carry binaryMsg, not msg.
	bin := h.do(tom, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), BinaryMsg: []byte{1, 2, 3}}})
	got = h.d.take()
	if dm := got[0].cmd.GetDirectMessage(); dm.Msg != nil || string(dm.BinaryMsg) != "\x01\x02\x03" {
		t.Fatalf("binary push %v", dm)
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(1)})).GetLogsMessage().GetLogs()
	if len(logs) != 1 || logs[0].GetMsgId() != bin.GetAckMessage().GetUid() || logs[0].GetData() != "AQID" || !logs[0].GetBin() {
		t.Fatalf("binary history %v", logs)
	}

	// De-duplication by dt.
	dt := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("once"), Dt: proto.String("uuid-1")}}
	first := h.do(tom, dt).GetAckMessage()
	h.d.take()
	second := h.do(tom, dt).GetAckMessage()
	if first.GetUid() != second.GetUid() || first.GetT() != second.GetT() || len(h.d.take()) != 0 {
		t.Fatalf("dt dedup %v %v", first, second)
	}

	// Transient: acked and pushed, never stored.
	tr := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("typing"), Transient: proto.Bool(true)}}
	trAck := h.do(tom, tr).GetAckMessage()
	got = h.d.take()
	if trAck.GetUid() == "" || len(got) != 2 || !got[0].cmd.GetDirectMessage().GetTransient() {
		t.Fatalf("transient %v %v", trAck, pushKeys(got))
	}
	logs = h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(1)})).GetLogsMessage().GetLogs()
	if logs[0].GetData() != "once" {
		t.Fatalf("transient message stored: %v", logs)
	}
	if _, next := h.send(tom, cid, "after transient"); next <= trAck.GetT() {
		t.Fatalf("timestamp %d not after transient %d", next, trAck.GetT())
	}
}

func TestConversationDirectErrors(t *testing.T) {
	h := newHarness(t)
	tom, eve := h.caller("Tom", 1), h.caller("Eve", 2)
	cid := h.start(tom, "Jerry")
	h.fail(eve, directReq(cid, "hi"), protocol.ErrInvalidMessagingTarget)
	h.fail(tom, directReq("5a5d7433c3422b31ed845e76", "hi"), protocol.ErrInvalidMessagingTarget)
	h.fail(tom, directReq("_tmp:unknown", "hi"), protocol.ErrConversationNotFound)
	h.fail(tom, directReq(cid, strings.Repeat("x", protocol.MaxContentSize+1)), protocol.ErrFrameTooLong)
	big := directReq(cid, strings.Repeat("x", protocol.MaxContentSize-10))
	big.DirectMessage.PushData = proto.String(`{"alert":"a long alert"}`)
	h.fail(tom, big, protocol.ErrFrameTooLong)
	h.do(tom, directReq(cid, strings.Repeat("x", protocol.MaxContentSize)))
	h.fail(tom, &pb.GenericCommand{Cmd: pb.CommandType_echo.Enum()}, protocol.ErrInternal)
}

func TestConversationDirectConcurrentTimestamps(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]bool{}
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				_, ts := h.send(Caller{App: testApp, ClientID: "Tom", Session: SessionID(i + 10)}, cid, "m")
				mu.Lock()
				seen[ts] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 80 {
		t.Fatalf("%d distinct timestamps for 80 messages", len(seen))
	}
	// Jerry receives every message, in timestamp order.
	var last int64
	n := 0
	for _, p := range h.d.take() {
		if p.client != "Jerry" {
			continue
		}
		ts := p.cmd.GetDirectMessage().GetTimestamp()
		if ts <= last {
			t.Fatalf("push %d out of order: %d after %d", n, ts, last)
		}
		last = ts
		n++
	}
	if n != 80 {
		t.Fatalf("Jerry got %d pushes", n)
	}
}

func TestConversationWillMessages(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()
	will := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bye"), Will: proto.Bool(true)}}
	ack := h.do(tom, will).GetAckMessage()
	if ack.GetUid() == "" || len(h.d.take()) != 0 {
		t.Fatalf("will message pushed early")
	}
	// A clean logout drops it.
	h.d.disconnect("Tom", 1)
	h.e.SessionGone(testApp, "Tom", 1, true)
	if len(h.d.take()) != 0 {
		t.Fatalf("will delivered on clean logout")
	}
	tom = h.caller("Tom", 3)
	h.do(tom, will)
	h.d.disconnect("Tom", 3)
	h.e.SessionGone(testApp, "Tom", 3, false)
	got := h.d.take()
	if len(got) != 1 || got[0].client != "Jerry" || got[0].cmd.GetDirectMessage().GetMsg() != "bye" {
		t.Fatalf("will pushes %v", pushKeys(got))
	}
}

func TestConversationDirectConcurrentDedup(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	var wg sync.WaitGroup
	uids := make([]string, 8)
	for i := range uids {
		wg.Go(func() {
			req := directReq(cid, "once")
			req.DirectMessage.Dt = proto.String("same-dt")
			uids[i] = h.do(tom, req).GetAckMessage().GetUid()
		})
	}
	wg.Wait()
	for _, u := range uids {
		if u != uids[0] {
			t.Fatalf("different ids for one dt: %v", uids)
		}
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if len(logs) != 1 {
		t.Fatalf("%d stored messages for one dt", len(logs))
	}
}

func TestConversationWillMessagesAsync(t *testing.T) {
	h := newHarness(t)
	h.e.Start(t.Context())
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()
	h.do(tom, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bye"), Will: proto.Bool(true)}})
	h.d.disconnect("Tom", 1)
	h.e.SessionGone(testApp, "Tom", 1, false)
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, p := range h.d.take() {
			if p.client == "Jerry" && p.cmd.GetDirectMessage().GetMsg() == "bye" {
				return nil
			}
		}
		return errors.New("will message not delivered")
	})
}

// A node whose lease ran out while a send waited assigns no timestamp and
// stores nothing: the send fails with ErrNotCoordinator (the cluster runs
// it again at the coordinator).
func TestEngineSendNeedsTheLease(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	h.lostLease.Store(true)
	if _, err := h.e.Handle(context.Background(), tom, directReq(cid, "late")); !errors.Is(err, ErrNotCoordinator) {
		t.Fatalf("send without the lease: %v, want ErrNotCoordinator", err)
	}
	h.lostLease.Store(false)
	if m, err := h.e.newestMessage(testApp, cid); err != nil || m != nil {
		t.Fatalf("newest message after a refused send = %+v, %v; want none", m, err)
	}
	h.send(tom, cid, "on time")
}

// A will message held by a node that no longer coordinates its
// conversation when the session drops goes to the coordinator through the
// will forwarder, with the id its sender was given.
func TestConversationWillMessageAfterTheLeaseMoved(t *testing.T) {
	h := newHarness(t)
	h.e.Start(t.Context())
	tom := h.caller("Tom", 1)
	h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	h.d.take()
	ack := h.do(tom, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: &pb.DirectCommand{
		Cid: proto.String(cid), Msg: proto.String("bye"), Will: proto.Bool(true)}})
	type forwarded struct {
		c   Caller
		dm  *pb.DirectCommand
		mid string
	}
	got := make(chan forwarded, 1)
	h.e.SetWillForwarder(func(_ context.Context, c Caller, dm *pb.DirectCommand, mid string) error {
		got <- forwarded{c, dm, mid}
		return nil
	})
	h.lostLease.Store(true) // the lease moved to another node
	h.d.disconnect("Tom", 1)
	h.e.SessionGone(testApp, "Tom", 1, false)
	select {
	case f := <-got:
		if f.c.ClientID != "Tom" || f.c.Session != 1 || f.dm.GetCid() != cid || f.dm.GetMsg() != "bye" || f.dm.GetWill() ||
			f.mid != ack.GetAckMessage().GetUid() {
			t.Fatalf("forwarded %+v %v %q; want Tom's will %q", f.c, f.dm, f.mid, ack.GetAckMessage().GetUid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the will message was not forwarded")
	}
	// The coordinator stores it under that id.
	h.lostLease.Store(false)
	if err := h.e.SendWill(context.Background(), tom, &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String("bye")},
		ack.GetAckMessage().GetUid()); err != nil {
		t.Fatal(err)
	}
	logs := h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid)})).GetLogsMessage().GetLogs()
	if len(logs) != 1 || logs[0].GetMsgId() != ack.GetAckMessage().GetUid() {
		t.Fatalf("history %v, want the will under its id", logs)
	}
}

// TestConversationSendSharedRecordFollowsWrites sends through the shared
// decoded record the store keeps (loadConvShared), on the plain store and
// through the cluster KV, across membership changes: each send must see
// the record as the last change left it (who may send, who gets the push),
// and a send must not change the shared record.
func TestConversationSendSharedRecordFollowsWrites(t *testing.T) {
	for _, name := range []string{"plain store", "cluster kv"} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if name == "cluster kv" {
				h, _ = clusterHarness(t)
			}
			tom, jerry, mary := h.caller("Tom", 1), h.caller("Jerry", 2), h.caller("Mary", 3)
			cid := h.start(tom, "Jerry")
			for range 3 {
				h.send(jerry, cid, "hi")
			}
			h.d.take()
			h.do(tom, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Jerry"}}))
			h.fail(jerry, directReq(cid, "still here?"), protocol.ErrInvalidMessagingTarget)
			h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{"Mary"}}))
			h.d.take()
			h.send(mary, cid, "hello")
			if got := pushKeys(h.d.take()); !slices.Equal(got, []string{"Tom/1:direct"}) {
				t.Fatalf("pushes of Mary's send: %v", got)
			}
			h.send(tom, cid, "welcome")
			if got := pushKeys(h.d.take()); !slices.Equal(got, []string{"Mary/3:direct"}) {
				t.Fatalf("pushes of Tom's send: %v", got)
			}
			r, err := h.e.loadConvShared(testApp, cid)
			if err != nil || !slices.Equal(r.Members, []string{"Mary", "Tom"}) {
				t.Fatalf("shared record after the sends: %v, %v", r, err)
			}
		})
	}
}
