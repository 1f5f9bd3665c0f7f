package client_test

import (
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
)

// gatedLogin logs id in through a gate (so the test can take it offline)
// with a fast reconnect schedule.
func gatedLogin(t *testing.T, tn *testNode, id string) (*client.IMClient, *gate) {
	t.Helper()
	g := startGate(t, strings.TrimPrefix(strings.TrimSuffix(tn.url, "/"), "ws://"))
	cfg := client.Config{AppID: apps.DevAppID, AppKey: apps.DevAppKey, URLs: []string{g.url()}, Server: tn.httpBase()}
	cfg.ReconnectBaseDelay, cfg.ReconnectMaxDelay = 10*time.Millisecond, 50*time.Millisecond
	return login(t, dial(t, cfg), id, client.LoginOptions{}), g
}

func TestClientNodeMultiDeviceSync(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tomA, tomB, jerry := tn.login(t, tomID), tn.login(t, tomID), tn.login(t, jerryID)
	conv, err := tomA.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Unique: true})
	mustNoErr(t, err)
	sent, err := conv.Send(ctx, client.NewText("from device A"))
	mustNoErr(t, err)
	// The sender's other device gets the message too; the receiver once.
	for _, cl := range []*client.IMClient{tomB, jerry} {
		if m := waitEvent[client.MessageEvent](t, cl, nil).Message; m.ID != sent.ID || m.From != tomID {
			t.Fatalf("%s got %+v", cl.ID(), m)
		}
	}
	// Re-sending the same message object (same dedup token) is idempotent.
	out := client.NewText("once")
	first, err := conv.Send(ctx, out)
	mustNoErr(t, err)
	second, err := conv.Send(ctx, out)
	mustNoErr(t, err)
	if first.ID != second.ID || !first.Timestamp.Equal(second.Timestamp) {
		t.Fatalf("resend with the same dt: %s@%v then %s@%v", first.ID, first.Timestamp, second.ID, second.Timestamp)
	}
	hist, err := conv.QueryMessages(ctx, client.HistoryQuery{})
	mustNoErr(t, err)
	if len(hist) != 2 {
		t.Fatalf("history has %d messages, want 2", len(hist))
	}
	// Jerry acked (automatically): in a 2-member conversation history
	// shows the delivery.
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		hist, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 1})
		if err != nil {
			return err
		}
		if hist[0].DeliveredAt.IsZero() {
			return errNotYet
		}
		return nil
	})
}

// TestClientNodeOfflinePatchSync: an edit made while the receiver is
// offline reaches it as a PatchEvent when it logs in again with its
// lastPatchTime.
func TestClientNodeOfflinePatchSync(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	jerryID := uid("Jerry")
	jerry, g := gatedLogin(t, tn, jerryID)
	tom := tn.login(t, uid("Tom"))
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Unique: true})
	mustNoErr(t, err)
	sent, err := conv.Send(ctx, client.NewText("draft"))
	mustNoErr(t, err)
	waitEvent[client.MessageEvent](t, jerry, nil)

	g.setOpen(false)
	waitEvent[client.DisconnectEvent](t, jerry, nil)
	_, err = conv.UpdateMessage(ctx, sent, client.NewText("final"))
	mustNoErr(t, err)
	g.setOpen(true)
	pe := waitEvent[client.PatchEvent](t, jerry, nil)
	if tm, err := pe.Message.Typed(); err != nil || pe.Message.ID != sent.ID || tm.Text != "final" {
		t.Fatalf("patch after reconnect = %+v (%v)", pe.Message, err)
	}
}

// TestClientNodeWillMessage: a will message is delivered when its sender
// drops off the network, not before.
func TestClientNodeWillMessage(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID := uid("Tom")
	tom, g := gatedLogin(t, tn, tomID)
	jerry := tn.login(t, uid("Jerry"))
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerry.ID()}, Unique: true})
	mustNoErr(t, err)
	waitEvent(t, jerry, membership(client.MembersJoined, conv.ID()))
	will := client.NewText("I went offline")
	will.Will = true
	_, err = conv.Send(ctx, will)
	mustNoErr(t, err)
	// A later ordinary message arrives first: the will is held back.
	_, err = conv.Send(ctx, client.NewText("still here"))
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; !strings.Contains(m.Content, "still here") {
		t.Fatalf("first delivered message = %q, the will was not held back", m.Content)
	}
	g.setOpen(false)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; !strings.Contains(m.Content, "I went offline") || m.From != tomID {
		t.Fatalf("will message = %+v", m)
	}
}

func TestClientNodeChatRoomLeave(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tom, jerry := tn.login(t, uid("Tom")), tn.login(t, uid("Jerry"))
	room, err := tom.CreateChatRoom(ctx, "room", nil)
	mustNoErr(t, err)
	jroom := jerry.Conversation(room.ID())
	mustNoErr(t, jroom.Join(ctx))
	count := func(want int) {
		t.Helper()
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			n, err := room.Count(ctx)
			if err != nil {
				return err
			}
			if n != want {
				return errNotYet
			}
			return nil
		})
	}
	count(2)
	mustNoErr(t, jroom.Quit(ctx))
	count(1)
	_, err = room.Send(ctx, client.NewText("anyone?"))
	mustNoErr(t, err)
	// Jerry left: a message he sends still works (anyone may send to a chat
	// room), but he no longer receives Tom's. Synchronize on his own send.
	_, err = jroom.Send(ctx, client.NewText("me"))
	mustNoErr(t, err)
	for _, ev := range drainEvents(jerry) {
		if me, ok := ev.(client.MessageEvent); ok && me.Message.ConversationID == room.ID() {
			t.Fatalf("left member received %+v", me.Message)
		}
	}
	if m := waitEvent[client.MessageEvent](t, tom, nil).Message; !strings.Contains(m.Content, "me") {
		t.Fatalf("tom got %+v", m)
	}
}
