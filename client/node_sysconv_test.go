package client_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
)

// TestClientNodeSystemConversation: the app's back end (ServerAPI) makes
// and feeds a system conversation; clients find, subscribe, receive, read
// and write to it; what they write reaches the system-conversation webhook.
func TestClientNodeSystemConversation(t *testing.T) {
	hs := startHookServer(t, nil)
	tn := startNodeWith(t, devAppWithHooks(hs, nil))
	ctx := testCtx(t)
	api := client.NewServerAPI("http://"+tn.n.ClientAddr().String(), apps.DevAppID, apps.DevMasterKey)
	cid, err := api.CreateServiceConversation(ctx, map[string]any{"name": "Notices"})
	mustNoErr(t, err)

	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom, jerry := tn.login(t, tomID), tn.login(t, jerryID)
	found, err := tom.ServiceConversationQuery().Find(ctx)
	mustNoErr(t, err)
	if len(found) != 1 || found[0].ID() != cid || !found[0].Info().System || found[0].Info().Subscribed || found[0].Info().Name != "Notices" {
		t.Fatalf("found %+v", found)
	}
	conv := found[0]
	mustNoErr(t, conv.Subscribe(ctx))
	jconv, err := jerry.GetConversation(ctx, cid)
	mustNoErr(t, err)
	mustNoErr(t, jconv.Subscribe(ctx))
	mustNoErr(t, conv.Fetch(ctx))
	if i := conv.Info(); !i.Subscribed || i.SubscribedAt.IsZero() || i.SubscriptionMuted {
		t.Fatalf("after subscribe %+v", i)
	}
	if _, err := conv.Add(ctx, []string{jerryID}); !errors.Is(err, protocol.ErrNormalConversationRequired) {
		t.Fatal("subscribing someone else succeeded")
	}
	if n, err := api.SubscriberCount(ctx, cid); err != nil || n != 2 {
		t.Fatalf("count %d %v", n, err)
	}
	subs, err := api.Subscribers(ctx, cid, 50, "")
	mustNoErr(t, err)
	if got := []string{subs[0].ClientID, subs[1].ClientID}; !sameSet(got, []string{tomID, jerryID}) {
		t.Fatalf("subscribers %v", got)
	}

	sent, err := api.Broadcast(ctx, cid, "Bot", "hello all", nil)
	mustNoErr(t, err)
	for _, cl := range []*client.IMClient{tom, jerry} {
		ev := waitEvent(t, cl, func(e client.MessageEvent) bool { return e.Message.ID == sent.ID })
		if ev.Message.From != "Bot" || ev.Message.Content != "hello all" || ev.Message.ConversationID != cid {
			t.Fatalf("broadcast %+v", ev.Message)
		}
	}
	only, err := api.SendToClients(ctx, cid, "Bot", []string{jerryID}, "just Jerry", false)
	mustNoErr(t, err)
	waitEvent(t, jerry, func(e client.MessageEvent) bool { return e.Message.ID == only.ID })
	hist, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 10})
	mustNoErr(t, err)
	if len(hist) != 1 || hist[0].ID != sent.ID {
		t.Fatalf("Tom's history %+v", hist)
	}
	hist, err = jconv.QueryMessages(ctx, client.HistoryQuery{Limit: 10})
	mustNoErr(t, err)
	if len(hist) != 2 || hist[1].ID != only.ID {
		t.Fatalf("Jerry's history %+v", hist)
	}

	up, err := jconv.Send(ctx, client.NewText("help"))
	mustNoErr(t, err)
	call := hs.waitCall("/sys", nil)
	var recs []map[string]any
	mustNoErr(t, json.Unmarshal(call.Body, &recs))
	if len(recs) != 1 || recs[0]["msgId"] != up.ID || recs[0]["from"] != jerryID || !strings.Contains(recs[0]["data"].(string), `"help"`) ||
		recs[0]["conv"].(map[string]any)["objectId"] != cid {
		t.Fatalf("system-conversation webhook got %s", call.Body)
	}

	mustNoErr(t, conv.Unsubscribe(ctx))
	after, err := api.Broadcast(ctx, cid, "Bot", "second", nil)
	mustNoErr(t, err)
	waitEvent(t, jerry, func(e client.MessageEvent) bool { return e.Message.ID == after.ID })
	if _, err := tom.Query().EqualTo("objectId", cid).Find(ctx); err != nil { // barrier for Tom's pushes
		t.Fatal(err)
	}
	for _, ev := range drainEvents(tom) {
		if m, ok := ev.(client.MessageEvent); ok && m.Message.ID == after.ID {
			t.Fatal("an unsubscribed client got a broadcast")
		}
	}

	normal, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}})
	mustNoErr(t, err)
	var re *client.RESTError
	if _, err := api.Broadcast(ctx, normal.ID(), "Bot", "x", nil); !errors.As(err, &re) || re.Code != int(protocol.ErrSystemConversationRequired.Code) {
		t.Fatalf("broadcast to a normal conversation: %v", err)
	}
	mustNoErr(t, api.UpdateServiceConversation(ctx, cid, map[string]any{"name": "News"}))
	mustNoErr(t, conv.Fetch(ctx))
	if conv.Info().Name != "News" {
		t.Fatalf("after update %+v", conv.Info())
	}
	mustNoErr(t, api.DeleteServiceConversation(ctx, cid))
	if left, err := tom.ServiceConversationQuery().Find(ctx); err != nil || !slices.Equal(ids(left), nil) {
		t.Fatalf("after delete %v %v", left, err)
	}
}

func ids(convs []*client.Conversation) []string {
	var out []string
	for _, c := range convs {
		out = append(out, c.ID())
	}
	return out
}
