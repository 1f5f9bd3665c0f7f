package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imcluster/imcluster/node/store"
)

// Offline push (docs/push.md). When a stored message of a normal,
// temporary or system conversation has recipients with no live session,
// the send writes a push entry (FamPush, in the conversation's shard) in
// the same batch as the message, so the push is as durable as the message
// and replicated with it. The push loop of the node coordinating the shard
// resolves the entry (_receiversOffline, pushData, defaults per message
// type, mute) once, hands it to the app's PushSender, retries failures with
// back-off, and deletes the entry when the sender accepted it. A new
// coordinator continues the retries of the old one; a push it sends again
// (the old one crashed between the send and the delete) carries the same
// idempotency keys (message id + ":" + recipient), so the receiving push
// service drops the repeat.

// PushSender hands pushes to an app's push service (node/push: a webhook;
// APNs or FCM senders implement the same interface).
type PushSender interface {
	// PushApps lists the apps with offline push configured.
	PushApps() []string
	// PushEnabled reports whether app has offline push configured.
	PushEnabled(app string) bool
	// SendPush delivers one notification; nil means the service accepted
	// it, an error that it should be retried.
	SendPush(ctx context.Context, n PushNotification) error
}

// PushNotification is one push for one message (LeanCloud's fields).
type PushNotification struct {
	App        string
	ConvID     string
	MsgID      string
	From       string
	Timestamp  int64
	Recipients []string
	// Mentioned are the recipients the message mentions.
	Mentioned []string
	// Payload is the push data (LeanCloud push format: alert, badge,
	// sound, per-channel overrides, custom keys), with convid added.
	Payload map[string]any
	// Source is where the payload came from: hook, pushData or default.
	Source    string
	ExpiresAt int64
	// Attempt counts the tries before this one.
	Attempt int
}

// IdempotencyKey is the key of the push of msgID to recipient: equal for
// every retry, on every node.
func IdempotencyKey(msgID, recipient string) string { return msgID + ":" + recipient }

// Push limits.
const (
	pushExpiry       = 7 * 24 * time.Hour // LeanCloud's notification expiry
	maxPushAttempts  = 12
	maxPushBackoff   = 5 * time.Minute
	pushBatch        = 100 // entries handled per shard and tick
	pushCallTimeout  = 10 * time.Second
	maxPushAlertText = 100 // runes of text in a default alert
)

// pushEntry is the value of FamPush.
type pushEntry struct {
	Conv       string   `json:"c"`
	Msg        string   `json:"m"`
	From       string   `json:"f"`
	Ts         int64    `json:"t"`
	Offline    []string `json:"o"`            // offline recipients at send time (muted ones included)
	Muted      []string `json:"mu,omitempty"` // those of Offline who muted the conversation
	Content    string   `json:"d,omitempty"`
	Bin        bool     `json:"b,omitempty"`
	PushData   string   `json:"pd,omitempty"`
	MentionAll bool     `json:"ma,omitempty"`
	Mentions   []string `json:"mp,omitempty"`
	// Resolved: Targets, Payload and Source are final (the hook ran).
	Resolved bool           `json:"r,omitempty"`
	Targets  []string       `json:"tg,omitempty"`
	Payload  map[string]any `json:"p,omitempty"`
	Source   string         `json:"s,omitempty"`
	Attempts int            `json:"a,omitempty"`
	NextAt   int64          `json:"n,omitempty"`
}

func (e *Engine) pushKey(app, cid, mid string) []byte {
	return e.convKey(app, cid, store.FamPush).Str(mid).Bytes()
}

// queuePush adds the push entry of m to b when the app sends pushes and
// some recipient is offline. to are the message's recipients; muted
// reports a recipient who muted the conversation.
func (e *Engine) queuePush(b *store.Batch, app string, r *convRecord, m *message, pushData string, to []string, muted func(string) bool) {
	if e.cfg.Push == nil || r.Kind == convTransient || !e.cfg.Push.PushEnabled(app) {
		return
	}
	recipients := without(sortedSet(to), []string{m.From})
	offline := without(recipients, sortedSet(e.d.Online(app, recipients)))
	if len(offline) == 0 {
		return
	}
	en := pushEntry{Conv: r.ID, Msg: m.ID, From: m.From, Ts: m.Ts, Offline: offline, PushData: pushData,
		MentionAll: m.MentionAll, Mentions: m.MentionPids}
	for _, id := range offline {
		if muted(id) {
			en.Muted = append(en.Muted, id)
		}
	}
	if m.IsBin {
		en.Bin = true
	} else {
		en.Content = m.Data
	}
	v, _ := json.Marshal(en)
	b.Set(e.pushKey(app, r.ID, m.ID), v)
	e.metrics.pushQueued.Inc()
}

// pushLoop runs the pushes of the shards this node coordinates until ctx
// ends.
func (e *Engine) pushLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.PushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.cfg.Push == nil {
			continue
		}
		for _, app := range e.cfg.Push.PushApps() {
			for _, shard := range e.shards.Coordinated() {
				if ctx.Err() != nil {
					return
				}
				e.pushShard(ctx, app, shard)
			}
		}
	}
}

// pushShard handles the due entries of one app in one shard.
func (e *Engine) pushShard(ctx context.Context, app string, shard uint16) {
	now := e.nowMs()
	type due struct {
		key []byte
		en  pushEntry
	}
	var list []due
	err := e.st.ScanPrefix(store.NewKey(shard, app, store.FamPush).Bytes(), false, func(k, v []byte) (bool, error) {
		var en pushEntry
		if err := json.Unmarshal(v, &en); err != nil {
			return false, err
		}
		if en.NextAt <= now {
			list = append(list, due{key: slices.Clone(k), en: en})
		}
		return len(list) < pushBatch, nil
	})
	if err != nil {
		e.log.Warn("Scanning pushes", "app", app, "shard", shard, "err", err)
		return
	}
	for _, d := range list {
		if ctx.Err() != nil || !e.shards.Coordinates(shard) {
			return
		}
		e.pushOne(ctx, app, d.key, d.en)
	}
}

// pushOne resolves (once) and sends one entry, then deletes it or
// schedules the retry.
func (e *Engine) pushOne(ctx context.Context, app string, key []byte, en pushEntry) {
	now := e.nowMs()
	done := func(result string) {
		b := e.st.NewBatch()
		b.Delete(key)
		if err := e.st.Commit(b); err != nil {
			e.log.Warn("Deleting a push", "app", app, "msg", en.Msg, "err", err)
			return
		}
		e.metrics.offlinePushes.WithLabelValues(result).Inc()
	}
	if now > en.Ts+pushExpiry.Milliseconds() {
		done("expired")
		return
	}
	if !en.Resolved {
		skip, retry := e.resolvePush(ctx, app, &en)
		switch {
		case retry:
			e.retryPush(app, key, en, errors.New("_receiversOffline failed"))
			return
		case skip:
			done("skipped")
			return
		}
	}
	if len(en.Targets) == 0 || en.Payload == nil {
		done("skipped")
		return
	}
	n := PushNotification{App: app, ConvID: en.Conv, MsgID: en.Msg, From: en.From, Timestamp: en.Ts, Recipients: en.Targets,
		Payload: en.Payload, Source: en.Source, ExpiresAt: en.Ts + pushExpiry.Milliseconds(), Attempt: en.Attempts}
	for _, id := range en.Targets {
		if en.MentionAll || slices.Contains(en.Mentions, id) {
			n.Mentioned = append(n.Mentioned, id)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, pushCallTimeout)
	err := e.cfg.Push.SendPush(cctx, n)
	cancel()
	if err != nil {
		e.retryPush(app, key, en, err)
		return
	}
	done("sent")
}

// retryPush stores the entry back with the next attempt's time, or drops
// it after maxPushAttempts.
func (e *Engine) retryPush(app string, key []byte, en pushEntry, cause error) {
	en.Attempts++
	b := e.st.NewBatch()
	if en.Attempts >= maxPushAttempts {
		e.log.Warn("Dropping a push after retries", "app", app, "msg", en.Msg, "attempts", en.Attempts, "err", cause)
		b.Delete(key)
		e.metrics.offlinePushes.WithLabelValues("failed").Inc()
	} else {
		backoff := min(time.Second<<min(en.Attempts-1, 20), maxPushBackoff)
		en.NextAt = e.nowMs() + backoff.Milliseconds()
		v, _ := json.Marshal(en)
		b.Set(key, v)
		e.metrics.offlinePushes.WithLabelValues("retry").Inc()
	}
	if err := e.st.Commit(b); err != nil {
		e.log.Warn("Storing a push retry", "app", app, "msg", en.Msg, "err", err)
	}
}

// resolvePush decides the targets and payload: _receiversOffline's answer
// (skip, offlinePeers, pushMessage, force), then the message's pushData,
// then the default for its type. Muted recipients get no push unless the
// hook forces it. retry: the hook failed and fails closed.
func (e *Engine) resolvePush(ctx context.Context, app string, en *pushEntry) (skip, retry bool) {
	targets := without(en.Offline, en.Muted)
	var payload map[string]any
	source := ""
	const hook = "_receiversOffline"
	if h := e.cfg.Hooks; h != nil && h.Has(app, hook) {
		mentioned := []string{}
		if !en.MentionAll {
			for _, id := range en.Offline {
				if slices.Contains(en.Mentions, id) {
					mentioned = append(mentioned, id)
				}
			}
		}
		res, err := h.Call(ctx, app, hook, map[string]any{
			"fromPeer": en.From, "convId": en.Conv, "offlinePeers": en.Offline, "content": en.Content, "bin": en.Bin,
			"timestamp": en.Ts, "msgId": en.Msg, "mentionAll": en.MentionAll, "mentionOfflinePeers": mentioned,
		})
		switch {
		case err != nil && h.FailClosed(app, hook):
			return false, true
		case err != nil:
			e.log.Warn("Hook failed, pushing the defaults", "app", app, "hook", hook, "err", err)
		case truthy(res["skip"]):
			return true, false
		default:
			if list, ok := res["offlinePeers"].([]any); ok {
				var ids []string
				for _, x := range list {
					if s, ok := x.(string); ok && slices.Contains(en.Offline, s) {
						ids = append(ids, s)
					}
				}
				targets = sortedSet(ids)
				if !truthy(res["force"]) {
					targets = without(targets, en.Muted)
				}
			} else if truthy(res["force"]) {
				targets = en.Offline
			}
			payload = payloadValue(res["pushMessage"])
			if payload != nil {
				source = "hook"
			}
		}
	}
	if payload == nil && en.PushData != "" {
		payload, source = payloadValue(en.PushData), "pushData"
	}
	if payload == nil {
		payload, source = defaultPayload(en), "default"
	}
	if _, ok := payload["convid"]; !ok {
		payload["convid"] = en.Conv
	}
	en.Resolved, en.Targets, en.Payload, en.Source = true, targets, payload, source
	return false, false
}

// payloadValue reads a push payload given as a JSON object or as a JSON
// string holding one; any other string is the alert text.
func payloadValue(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case string:
		if x == "" {
			return nil
		}
		var m map[string]any
		if json.Unmarshal([]byte(x), &m) == nil && m != nil {
			return m
		}
		return map[string]any{"alert": x}
	}
	return nil
}

// defaultAlerts are the alerts of typed messages without text.
var defaultAlerts = map[int64]string{-2: "[Image]", -3: "[Audio]", -4: "[Video]", -5: "[Location]", -6: "[File]", -127: ""}

// defaultPayload is the push of a message without pushData or hook answer:
// the text (first 100 characters) or a placeholder for its type, badge
// Increment, sound default.
func defaultPayload(en *pushEntry) map[string]any {
	alert := "New message"
	switch t, ok := lcType(en.Content); {
	case en.Bin:
	case ok && t == -1:
		var v struct {
			Text string `json:"_lctext"`
		}
		if json.Unmarshal([]byte(en.Content), &v) == nil && v.Text != "" {
			alert = v.Text
		}
	case ok:
		if a, known := defaultAlerts[t]; known && a != "" {
			alert = a
		}
	case !strings.HasPrefix(strings.TrimSpace(en.Content), "{") && en.Content != "":
		alert = en.Content
	}
	if utf8.RuneCountInString(alert) > maxPushAlertText {
		alert = string([]rune(alert)[:maxPushAlertText]) + "…"
	}
	return map[string]any{"alert": alert, "badge": "Increment", "sound": "default"}
}
