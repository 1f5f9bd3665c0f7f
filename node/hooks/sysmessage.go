package hooks

import (
	"time"

	"github.com/imcluster/imcluster/node/conversation"
)

// sysRetries is how often a failed system-conversation webhook request is
// retried (LeanCloud: up to 3 times).
const sysRetries = 3

// SysMessage queues a message a client sent to a system conversation for
// the app's system-conversation webhook (Hooks.SysMessageURL): a JSON
// array with one _SysMessage record, retried up to 3 times with back-off.
// Implements conversation.SysMessageSink; never blocks.
func (h *Hooks) SysMessage(m conversation.SysMessage) {
	s := h.state(m.App)
	if s == nil || s.hooks.SysMessageURL == "" {
		return
	}
	date := map[string]any{"__type": "Date", "iso": time.UnixMilli(m.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z")}
	rec := map[string]any{
		"msgId": m.ID, "conv": map[string]any{"__type": "Pointer", "className": "_Conversation", "objectId": m.ConvID},
		"from": m.From, "fromIp": nil, "data": m.Data, "bin": m.Bin, "timestamp": m.Timestamp,
		"createdAt": date, "updatedAt": date,
	}
	if m.Transient {
		rec["noPersist"] = true
	}
	h.enqueue(s, job{url: s.hooks.SysMessageURL, body: []any{rec}, retries: sysRetries})
}
