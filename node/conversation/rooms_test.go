package conversation

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// heldDeliverer is the test gateway with a latch: while held, a push of a
// direct message waits in Deliver (a chat room's fan-out still writing its
// sockets) until release.
type heldDeliverer struct {
	*testDeliverer
	entered chan struct{} // one value per held Deliver call
	release chan struct{}
}

func (d *heldDeliverer) Deliver(app string, clientIDs []string, except SessionID, cmd *pb.GenericCommand) {
	if cmd.GetCmd() == pb.CommandType_direct {
		d.entered <- struct{}{}
		<-d.release
	}
	d.testDeliverer.Deliver(app, clientIDs, except, cmd)
}

// TestRoomSendAnswersBeforeFanOut checks that a chat-room message is
// answered once it is stored, without waiting for its fan-out (more than
// maxInlineFanout members), that a sender answered early can leave at most
// maxQueuedPushes pushes undelivered behind a slow fan-out before its next
// send waits, and that every push still arrives, in order.
func TestRoomSendAnswersBeforeFanOut(t *testing.T) {
	h := newHarness(t)
	d := &heldDeliverer{testDeliverer: h.d, entered: make(chan struct{}, 64), release: make(chan struct{})}
	tom := h.caller("Tom", 1)
	cid := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{Transient: proto.Bool(true)})).GetConvMessage().GetCid()
	for i := range maxInlineFanout + 1 {
		c := h.caller(fmt.Sprintf("c%02d", i), SessionID(10+i))
		h.do(c, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{c.ClientID}}))
	}
	h.d.take()
	h.e.d = d
	h.e.Start(context.Background())
	released := false
	t.Cleanup(func() {
		if !released {
			close(d.release)
		}
	})

	send := func(msg string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := h.e.Handle(context.Background(), tom, directReq(cid, msg))
			done <- err
		}()
		return done
	}
	wait := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not answered while the fan-out is held", what)
		}
	}

	// The first message's fan-out is held in Deliver; its send is answered.
	first := send("m00")
	select {
	case <-d.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first message was never delivered")
	}
	wait(first, "m00")
	// Up to maxQueuedPushes undelivered: the next ones are queued behind it
	// and answered too.
	for i := 1; i < maxQueuedPushes; i++ {
		wait(send(fmt.Sprintf("m%02d", i)), fmt.Sprintf("m%02d", i))
	}
	// The next one finds the queue full: it waits for the drainer.
	st := h.e.convStripe(testApp, cid)
	over := send(fmt.Sprintf("m%02d", maxQueuedPushes))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st.qmu.Lock()
		waiting := st.drained != nil
		st.qmu.Unlock()
		if waiting {
			break
		}
		select {
		case err := <-over:
			t.Fatalf("a send past the queue's bound was answered (%v) while the fan-out is held", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("a send past the queue's bound neither waited nor was answered")
		}
		time.Sleep(time.Millisecond)
	}

	released = true
	close(d.release)
	wait(over, "the send past the bound")
	want := make([]string, maxQueuedPushes+1)
	for i := range want {
		want[i] = fmt.Sprintf("m%02d", i)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		var got []string
		d.mu.Lock()
		for _, p := range d.got {
			if p.client == "c00" {
				got = append(got, p.cmd.GetDirectMessage().GetMsg())
			}
		}
		d.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			t.Fatalf("c00 received %v, want %v", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRoomRecipientsFollowJoinsAndLeaves checks that a chat room's cached
// recipient list changes with every join and leave of an online client.
func TestRoomRecipientsFollowJoinsAndLeaves(t *testing.T) {
	h := newHarness(t)
	tom, jerry, mary := h.caller("Tom", 1), h.caller("Jerry", 2), h.caller("Mary", 3)
	cid := h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{Transient: proto.Bool(true)})).GetConvMessage().GetCid()
	join := func(c Caller, op pb.OpType) {
		t.Helper()
		h.do(c, convReq(op, &pb.ConvCommand{Cid: proto.String(cid), M: []string{c.ClientID}}))
	}
	sendTo := func(want ...string) {
		t.Helper()
		h.d.take()
		h.send(tom, cid, "hi")
		var got []string
		for _, p := range h.d.take() {
			if p.cmd.GetCmd() == pb.CommandType_direct {
				got = append(got, p.client)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("the message reached %v, want %v", got, want)
		}
	}
	join(jerry, pb.OpType_add)
	sendTo("Jerry")
	join(jerry, pb.OpType_remove)
	sendTo()
	join(mary, pb.OpType_add)
	sendTo("Mary")
}
