package client_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

// TestClientNodeUnreadCursor: a re-login carries lastUnreadNotifTime, so
// the unread summary lists only conversations that changed since the last
// one (LEANCLOUD-RTM.md 3.1.8).
func TestClientNodeUnreadCursor(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom := tn.login(t, tomID)
	a, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "a"})
	mustNoErr(t, err)
	b, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "b"})
	mustNoErr(t, err)
	_, err = a.Send(ctx, client.NewText("one"))
	mustNoErr(t, err)
	jerry, g := gatedLogin(t, tn, jerryID)
	u := waitEvent[client.UnreadEvent](t, jerry, nil)
	if len(u.Conversations) != 1 || u.Conversations[0].ConversationID != a.ID() || u.Conversations[0].Count != 1 {
		t.Fatalf("first unread = %+v", u)
	}
	g.setOpen(false)
	waitEvent[client.DisconnectEvent](t, jerry, nil)
	_, err = b.Send(ctx, client.NewText("while offline"))
	mustNoErr(t, err)
	g.setOpen(true)
	u = waitEvent[client.UnreadEvent](t, jerry, nil)
	if len(u.Conversations) != 1 || u.Conversations[0].ConversationID != b.ID() || u.Conversations[0].Count != 1 {
		t.Fatalf("unread after re-login = %+v, want only conversation b", u)
	}
}

func TestClientNodeMiscRules(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom, tom2 := tn.login(t, tomID), tn.login(t, tomID)
	mk := func(name string) *client.Conversation {
		c, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: name})
		mustNoErr(t, err)
		return c
	}
	a, b, c := mk("b"), mk("a"), mk("a")

	// Several sort keys: name ascending, then createdAt descending.
	list, err := tom.Query().ContainedIn("objectId", a.ID(), b.ID(), c.ID()).Ascending("name").Descending("createdAt").Find(ctx)
	mustNoErr(t, err)
	if len(list) != 3 || list[0].ID() != c.ID() || list[1].ID() != b.ID() || list[2].ID() != a.ID() {
		t.Fatalf("sort name,-createdAt gave %v %v %v", list[0].Info().Name, list[1].Info().Name, list[2].Info().Name)
	}

	// The 5 KB limit counts pushData too.
	big := client.NewRaw(strings.Repeat("x", 4<<10))
	big.PushData = map[string]any{"alert": strings.Repeat("y", 2<<10)}
	if _, err := a.Send(ctx, big); !errors.Is(err, protocol.ErrFrameTooLong) {
		t.Fatalf("4 KB content + 2 KB pushData: %v", err)
	}

	// conv/updated reaches the initiator's other session.
	_, err = a.Update(ctx, map[string]any{"topic": "t"})
	mustNoErr(t, err)
	ev := waitEvent[client.InfoUpdatedEvent](t, tom2, nil)
	if ev.ConversationID != a.ID() || ev.By != tomID || ev.Attributes["topic"] != "t" || ev.Modified["topic"] != "t" || ev.At.IsZero() {
		t.Fatalf("updated on the other device = %+v", ev)
	}
}
