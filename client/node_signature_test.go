package client_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
)

// TestClientNodeSignatures runs the signature factories against an app that
// requires login and conversation signatures (LEANCLOUD-RTM.md 3.1.4). The
// factories play the app's signature server: HMAC-SHA1 with the master key.
func TestClientNodeSignatures(t *testing.T) {
	app := apps.App{ID: "signed-app", Key: "signed-key", MasterKey: "signed-master", LoginSignature: true, ConversationSignature: true}
	tn := startNodeWith(t, app)
	ctx := testCtx(t)
	nonce := 0
	loginSig := func(_ context.Context, id string) (client.Signature, error) {
		nonce++
		ts, n := time.Now().UnixMilli(), "n"+strconv.Itoa(nonce)
		return client.Signature{Signature: app.Sign(apps.LoginMessage(app.ID, id, ts, n)), Timestamp: ts, Nonce: n}, nil
	}
	convSig := func(_ context.Context, cid, id string, members []string, action string) (client.Signature, error) {
		ts := time.Now().Unix() // seconds are accepted too
		return client.Signature{Signature: app.Sign(apps.ConversationMessage(app.ID, id, cid, members, ts, "cn", action)), Timestamp: ts, Nonce: "cn"}, nil
	}
	conn := func() *client.Conn {
		cfg := client.DefaultConfig(app.ID, tn.url)
		return dial(t, cfg)
	}
	tomID, jerryID, maryID := uid("Tom"), uid("Jerry"), uid("Mary")
	if _, err := conn().Login(ctx, tomID, client.LoginOptions{}); !errors.Is(err, protocol.ErrSignatureFailed) {
		t.Fatalf("unsigned login: %v", err)
	}
	forged := func(context.Context, string) (client.Signature, error) {
		return client.Signature{Signature: "signature", Timestamp: time.Now().UnixMilli(), Nonce: "nonce"}, nil
	}
	if _, err := conn().Login(ctx, tomID, client.LoginOptions{Signature: forged}); !errors.Is(err, protocol.ErrSignatureFailed) {
		t.Fatalf("forged login: %v", err)
	}
	tom := login(t, conn(), tomID, client.LoginOptions{Signature: loginSig, ConversationSignature: convSig})
	unsigned := login(t, conn(), jerryID, client.LoginOptions{Signature: loginSig})
	if _, err := unsigned.CreateConversation(ctx, client.CreateOptions{Members: []string{maryID}}); !errors.Is(err, protocol.ErrConversationSignature) {
		t.Fatalf("unsigned conv/start: %v", err)
	}
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Unique: true})
	mustNoErr(t, err)
	if _, err := conv.Add(ctx, []string{maryID}); err != nil {
		t.Fatalf("signed add: %v", err)
	}
	if _, err := conv.Remove(ctx, []string{maryID}); err != nil {
		t.Fatalf("signed remove: %v", err)
	}
	if _, err := unsigned.Conversation(conv.ID()).Add(ctx, []string{maryID}); !errors.Is(err, protocol.ErrConversationSignature) {
		t.Fatalf("unsigned add: %v", err)
	}
}

// TestClientNodeAppIsolation: the same client id in two apps sees only its
// own app's data.
func TestClientNodeAppIsolation(t *testing.T) {
	other := apps.App{ID: "other-app", Key: "other-key", MasterKey: "other-master"}
	tn := startNodeWith(t, apps.Dev(), other)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	devTom := tn.login(t, tomID)
	conv, err := devTom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "dev only", Unique: true})
	mustNoErr(t, err)
	_, err = conv.Send(ctx, client.NewText("dev secret"))
	mustNoErr(t, err)

	otherTom := login(t, dial(t, client.DefaultConfig(other.ID, tn.url)), tomID, client.LoginOptions{})
	if _, err := otherTom.GetConversation(ctx, conv.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("other app fetched the dev conversation: %v", err)
	}
	mine, err := otherTom.Query().Find(ctx)
	mustNoErr(t, err)
	if len(mine) != 0 {
		t.Fatalf("other app's default query found %d conversations", len(mine))
	}
	if _, err := otherTom.Conversation(conv.ID()).QueryMessages(ctx, client.HistoryQuery{}); err == nil {
		t.Fatal("other app read the dev conversation's history")
	}
	if _, err := otherTom.Conversation(conv.ID()).Send(ctx, client.NewText("x")); !errors.Is(err, protocol.ErrInvalidMessagingTarget) {
		t.Fatalf("other app sent into the dev conversation: %v", err)
	}
	// A same-member unique conversation in the other app is a new one.
	oc, err := otherTom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Unique: true})
	mustNoErr(t, err)
	if oc.ID() == conv.ID() {
		t.Fatal("unique conversation shared across apps")
	}
}
