package conversation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// TestServerAPICallsAsCommands runs every server API write as the command
// the router carries to the coordinator (here: straight into Handle,
// counting the commands) and checks each has the effect and answer of the
// engine method it stands for.
func TestServerAPICallsAsCommands(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var commands []*pb.GenericCommand
	api := NewServerAPI(h.e, func(ctx context.Context, c Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
		if !c.Server() || req.GetCmd() != pb.CommandType_data {
			t.Errorf("server call sent as %v by %+v", req.GetCmd(), c)
		}
		parts := h.e.Route(c, req)
		if len(parts) != 1 || parts[0].Anywhere || parts[0].Shard != h.e.shards.ConvShard(c.App, req.GetConvMessage().GetCid()) {
			t.Errorf("server call routed to %+v", parts)
		}
		commands = append(commands, req)
		return h.e.Handle(ctx, c, req)
	})

	cid, err := api.CreateConversation(ctx, testApp, ImportedConversation{Members: []string{"Tom", "Jerry"}, Unique: true,
		Columns: map[string]any{"name": "u", "big": 9007199254740993}})
	if err != nil || !validConvID(cid) {
		t.Fatalf("create: %q %v", cid, err)
	}
	if h.e.shards.ConvShard(testApp, cid) != h.e.shards.ConvShard(testApp, uniqueKey([]string{"Jerry", "Tom"})) {
		t.Fatal("a unique conversation outside the shard of its unique key")
	}
	if again, err := api.CreateConversation(ctx, testApp, ImportedConversation{Members: []string{"Jerry", "Tom"}, Unique: true}); err != nil || again != cid {
		t.Fatalf("unique create again: %q %v, want %q", again, err, cid)
	}
	r, err := h.e.loadConv(testApp, cid)
	if err != nil || r == nil || !bytes.Contains(r.stored, []byte("9007199254740993")) {
		t.Fatalf("created record %+v %v: the column must keep its exact number", r, err)
	}

	in := ImportedConversation{ID: "imported-1", Creator: "Tom", Members: []string{"Tom", "Jerry"}, Created: 1, Updated: 2}
	for _, want := range []bool{true, false} {
		if added, err := api.ImportConversation(ctx, testApp, in); err != nil || added != want {
			t.Fatalf("import conversation: %v %v, want %v", added, err, want)
		}
	}
	msgs := make([]ImportedMessage, 250)
	for i := range msgs {
		msgs[i] = ImportedMessage{ID: fmt.Sprintf("m%03d", i), From: "Tom", Ts: int64(1000 + i), Data: "x"}
	}
	n := len(commands)
	for _, want := range []int{250, 0} {
		if added, err := api.ImportMessages(ctx, testApp, in.ID, msgs); err != nil || added != want {
			t.Fatalf("import messages: %d %v, want %d", added, err, want)
		}
	}
	if sent := len(commands) - n; sent != 6 {
		t.Fatalf("250 messages twice took %d commands, want 3 each", sent)
	}
	if err := api.SetUnread(ctx, testApp, in.ID, map[string]int{"Jerry": 3}); err != nil {
		t.Fatal(err)
	}
	if u, err := h.e.UnreadCount(ctx, testApp, "Jerry", in.ID); err != nil || u != 3 {
		t.Fatalf("unread after SetUnread: %d %v", u, err)
	}
	if err := api.TempSilence(ctx, testApp, in.ID, "Jerry", time.Hour); err != nil {
		t.Fatal(err)
	}
	h.fail(h.caller("Jerry", 2), directReq(in.ID, "muffled"), protocol.ErrConversationBlacklisted)
	if err := api.DeleteMessage(ctx, testApp, in.ID, "m007", 1007); err != nil {
		t.Fatal(err)
	}
	var pe *protocol.Error
	if err := api.DeleteMessage(ctx, testApp, in.ID, "m007", 1007); !errors.As(err, &pe) || pe.Code != protocol.ErrMessageNotFound.Code {
		t.Fatalf("deleting a deleted message: %v", err)
	}
	if err := api.DeleteConversation(ctx, testApp, in.ID); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.e.loadConv(testApp, in.ID); r != nil || h.indexed("Jerry", in.ID) {
		t.Fatal("the conversation or its index survived the delete")
	}
}

// TestServerCallNeedsTheBackEnd: a client session's data command never
// runs a server call.
func TestServerCallNeedsTheBackEnd(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	req := &pb.GenericCommand{Cmd: pb.CommandType_data.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: proto.String(cid), Attr: protocol.JSON(`{"op":"deleteConversation"}`)}}
	if _, err := h.e.Handle(context.Background(), tom, req); err == nil {
		t.Fatal("a client ran a server call")
	}
	if r, _ := h.e.loadConv(testApp, cid); r == nil {
		t.Fatal("a client's data command deleted the conversation")
	}
	if _, ok := SystemCaller(testApp, "x").admin(); !ok {
		t.Fatal("SystemCaller is not the system API")
	}
	if _, ok := (Caller{App: testApp, ClientID: adminMark + "x", Session: 7}).admin(); ok {
		t.Fatal("a session with the system API's mark is the system API")
	}
}

// TestServerDeleteWaitsForAnEdit: the server API's delete of a message
// whose edit is being committed waits for the conversation's lock, so it
// deletes the edited message instead of being overwritten by it.
func TestServerDeleteWaitsForAnEdit(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	mid, ts := h.send(tom, cid, "typo")
	blocked, release := make(chan struct{}), make(chan struct{})
	hold := func(b *store.Batch) error {
		for _, op := range b.Ops() {
			if r, _, _, fam := store.ReadKey(op.Key); fam == store.FamPatch && r.Err() == nil {
				close(blocked)
				<-release
				return nil
			}
		}
		return nil
	}
	h.kv.fail.Store(&hold)
	edited := make(chan error, 1)
	go func() {
		_, err := h.e.Handle(context.Background(), tom, patchReq(&pb.PatchItem{Cid: proto.String(cid), Mid: proto.String(mid),
			Timestamp: proto.Int64(ts), Data: proto.String("fixed")}))
		edited <- err
	}()
	<-blocked // the edit holds the conversation's lock, its commit under way
	deleted := make(chan error, 1)
	go func() { deleted <- h.e.DeleteMessage(context.Background(), testApp, cid, mid, ts) }()
	// Give a delete that does not wait for the lock the time to finish
	// (then the edit would write the message back); one that waits
	// finishes only after the release.
	select {
	case err := <-deleted:
		deleted <- err
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-edited; err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if m, err := h.e.lookupMessage(testApp, cid, mid); err != nil || m != nil {
		t.Fatalf("the message survived its delete: %+v %v", m, err)
	}
}
