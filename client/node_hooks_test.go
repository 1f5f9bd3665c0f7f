package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/protocol"
)

// messageHook answers _messageReceived by the text of the message.
func messageHook(mary string) func(string, map[string]any) any {
	return func(hook string, p map[string]any) any {
		content, _ := p["content"].(string)
		switch {
		case hook == "_messageReceived" && strings.Contains(content, "drop me"):
			return map[string]any{"drop": true, "code": 42, "detail": "no swearing"}
		case hook == "_messageReceived" && strings.Contains(content, "modify me"):
			return map[string]any{"content": strings.ReplaceAll(content, "modify me", "modified")}
		case hook == "_messageReceived" && strings.Contains(content, "redirect me"):
			return map[string]any{"toPeers": []string{mary}}
		case hook == "_conversationStart" && p["attr"].(map[string]any)["name"] == "forbidden":
			return map[string]any{"reject": true, "code": 7, "detail": "bad name"}
		case hook == "_conversationStart":
			return map[string]any{"attr": map[string]any{"checked": true}}
		case hook == "_conversationAdd" && slices.Contains(p["members"].([]any), any("Banned")):
			return map[string]any{"reject": true, "code": 8, "detail": "banned"}
		case hook == "_conversationUpdate" && p["attr"] != nil:
			return map[string]any{"attr": map[string]any{"name": "renamed by hook"}}
		case hook == "_messageUpdate" && strings.Contains(content, "no edit"):
			return map[string]any{"drop": true, "code": 9, "detail": "frozen"}
		}
		return map[string]any{}
	}
}

func TestClientNodeHooks(t *testing.T) {
	tomID, jerryID, maryID := uid("Tom"), uid("Jerry"), uid("Mary")
	hs := startHookServer(t, messageHook(maryID))
	tn := startNodeWith(t, devAppWithHooks(hs, nil))
	ctx := testCtx(t)
	tom, jerry, mary := tn.login(t, tomID), tn.login(t, jerryID), tn.login(t, maryID)
	on := hs.waitCall("_clientOnline", func(c hookCall) bool { return c.Params["peerId"] == tomID })
	if on.Params["tag"] != "default" {
		t.Fatalf("_clientOnline %v", on.Params)
	}

	// Conversation hooks: reject before, notify after, attr merged.
	_, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "forbidden"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != protocol.ErrConversationRejectedByApp.Code || ce.AppCode != 7 || ce.Detail != "bad name" {
		t.Fatalf("rejected start: %v", err)
	}
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "ok"})
	mustNoErr(t, err)
	cid := conv.ID()
	mustNoErr(t, conv.Fetch(ctx))
	if info := conv.Info(); info.Attributes["checked"] != true {
		t.Fatalf("_conversationStart attr not merged: %+v", conv.Info())
	}
	hs.waitCall("_conversationStarted", func(c hookCall) bool { return c.Params["convId"] == cid })
	if _, err := conv.Add(ctx, []string{"Banned"}); !errors.Is(err, protocol.ErrConversationRejectedByApp) {
		t.Fatalf("rejected add: %v", err)
	}
	_, err = conv.Add(ctx, []string{uid("Spike")})
	mustNoErr(t, err)
	hs.waitCall("_conversationAdded", func(c hookCall) bool { return c.Params["convId"] == cid })
	changed, err := conv.Update(ctx, map[string]any{"name": "mine"})
	mustNoErr(t, err)
	mustNoErr(t, conv.Fetch(ctx))
	if conv.Info().Name != "renamed by hook" {
		t.Fatalf("_conversationUpdate attr not applied: %v %+v", changed, conv.Info())
	}

	// _messageReceived: drop (4402 with the hook's code), modify, redirect.
	_, err = conv.Send(ctx, client.NewText("please drop me"))
	if !errors.As(err, &ce) || ce.Code != protocol.ErrMessageRejectedByApp.Code || ce.AppCode != 42 || ce.AppMsg != "no swearing" {
		t.Fatalf("dropped send: %v", err)
	}
	m, err := conv.Send(ctx, client.NewText("modify me"))
	mustNoErr(t, err)
	got := waitEvent(t, jerry, func(e client.MessageEvent) bool { return e.Message.ID == m.ID })
	if !strings.Contains(got.Message.Content, "modified") {
		t.Fatalf("modified content %q", got.Message.Content)
	}
	sent := hs.waitCall("_messageSent", func(c hookCall) bool { return c.Params["msgId"] == m.ID })
	if !slices.Contains(sent.Params["onlinePeers"].([]any), any(jerryID)) {
		t.Fatalf("_messageSent %v", sent.Params)
	}
	r, err := conv.Send(ctx, client.NewText("redirect me"))
	mustNoErr(t, err)
	waitEvent(t, mary, func(e client.MessageEvent) bool { return e.Message.ID == r.ID })
	if _, err := jerry.Query().EqualTo("objectId", cid).Find(ctx); err != nil { // barrier for Jerry's pushes
		t.Fatal(err)
	}
	for _, ev := range drainEvents(jerry) {
		if e, ok := ev.(client.MessageEvent); ok && e.Message.ID == r.ID {
			t.Fatal("a message the hook redirected to Mary reached Jerry")
		}
	}

	// _messageUpdate: a drop answers 4405.
	frozen, err := conv.Send(ctx, client.NewText("hello"))
	mustNoErr(t, err)
	if _, err := conv.UpdateMessage(ctx, frozen, client.NewText("no edit")); !errors.Is(err, protocol.ErrMessageUpdateRejectedByApp) {
		t.Fatalf("rejected edit: %v", err)
	}
	_, err = conv.UpdateMessage(ctx, frozen, client.NewText("edited"))
	mustNoErr(t, err)

	// Self-quit: no _conversationRemove, a _conversationRemoved.
	mustNoErr(t, jerry.Conversation(cid).Quit(ctx))
	hs.waitCall("_conversationRemoved", func(c hookCall) bool { return c.Params["initBy"] == jerryID })
	if n := hs.count("_conversationRemove"); n != 0 {
		t.Fatalf("_conversationRemove called %d times for a self-quit", n)
	}
	mustNoErr(t, mary.Close(ctx))
	off := hs.waitCall("_clientOffline", func(c hookCall) bool { return c.Params["peerId"] == maryID })
	if off.Params["closeCode"] != float64(1) {
		t.Fatalf("_clientOffline %v", off.Params)
	}
}

// TestClientNodeHookFailurePolicy: a hook server that fails is ignored
// (fail open) unless the hook is configured to fail closed; a slow hook
// delays only the operation waiting for it.
func TestClientNodeHookFailurePolicy(t *testing.T) {
	hs := startHookServer(t, func(string, map[string]any) any { return 500 })
	tn := startNodeWith(t, devAppWithHooks(hs, func(h *apps.Hooks) {
		h.Enabled = []string{"_messageReceived", "_conversationStart"}
		h.FailClosed = []string{"_conversationStart"}
		h.TimeoutMs = 1000
	}))
	ctx := testCtx(t)
	tom := tn.login(t, uid("Tom"))
	// _conversationStart fails closed: 4305 with the cause.
	_, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Jerry")}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != protocol.ErrConversationRejectedByApp.Code || !strings.Contains(ce.Detail, "hook failed") {
		t.Fatalf("fail-closed start: %v", err)
	}
	hs.setAnswer(func(hook string, p map[string]any) any {
		content, _ := p["content"].(string)
		if strings.Contains(content, "slow") {
			time.Sleep(1500 * time.Millisecond) // past the 1 s timeout
		}
		if hook == "_messageReceived" && !strings.Contains(content, "slow") {
			return 500
		}
		return map[string]any{}
	})
	a, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Jerry")}})
	mustNoErr(t, err)
	// Another client's conversation (one client's own commands run in
	// order on its connection, so it would wait behind its slow send).
	spike := tn.login(t, uid("Spike"))
	b, err := spike.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Mary")}})
	mustNoErr(t, err)
	// _messageReceived fails open: HTTP 500 and a timeout both let the
	// message through unchanged.
	if _, err := a.Send(ctx, client.NewText("fails")); err != nil {
		t.Fatalf("fail-open send: %v", err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := a.Send(ctx, client.NewText("slow"))
		done <- err
	}()
	hs.waitCall("_messageReceived", func(c hookCall) bool { return strings.Contains(c.Params["content"].(string), "slow") })
	// While a's hook hangs, other conversations' messages go through at once.
	for range 5 {
		bStart := time.Now()
		_, err := b.Send(ctx, client.NewText("fast"))
		mustNoErr(t, err)
		if d := time.Since(bStart); d > 500*time.Millisecond {
			t.Fatalf("a send in another conversation took %v while a hook was slow", d)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("send after a hook timeout (fail open): %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Fatalf("slow hook send took %v, want about the 1 s timeout", d)
	}
}
