package client_test

import (
	"testing"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
)

// BenchmarkClientNodeSendHook measures what a _messageReceived hook adds
// to a send (client send to ack, one node, hook server on 127.0.0.1):
// no hook, a hook answering {} (no change), and a hook changing content.
// docs/benchmarks.md has the figures.
func BenchmarkClientNodeSendHook(b *testing.B) {
	cases := []struct {
		name   string
		hooks  bool
		answer func(string, map[string]any) any
	}{
		{"none", false, nil},
		{"unchanged", true, func(string, map[string]any) any { return map[string]any{} }},
		{"content", true, func(string, map[string]any) any { return map[string]any{"content": "changed"} }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			app := apps.Dev()
			if tc.hooks {
				hs := startHookServer(b, tc.answer)
				app = devAppWithHooks(hs, func(h *apps.Hooks) { h.Enabled = []string{"_messageReceived"} })
			}
			tn := startNodeWith(b, app)
			ctx := testCtx(b)
			tom := tn.login(b, uid("Tom"))
			conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{uid("Jerry")}})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := conv.Send(ctx, client.NewText("hello")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
