// Package push sends offline push notifications (docs/push.md). The
// conversation engine decides when a push is due, resolves its payload and
// keeps it, with its retries, next to the message; Service hands each one to
// the app's Sender. The webhook sender posts it to the app's own push
// service (apps file: hooks.pushUrl); APNs or FCM senders implement the same
// Sender interface.
package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/hooks"
)

// Sender delivers one notification for one app. nil means the push
// service accepted it (it will not be sent again unless the node crashed
// before recording that); an error means retry later.
type Sender interface {
	Send(ctx context.Context, app *apps.App, n conversation.PushNotification) error
}

// Service implements conversation.PushSender for the apps of a registry:
// every app with a pushUrl gets the webhook sender.
type Service struct {
	reg     *apps.Registry
	ids     []string
	webhook Sender
}

// NewService returns the push service of the apps in reg, sending from
// node nodeID (the X-Imnode-Node header). client may be nil.
func NewService(reg *apps.Registry, nodeID string, client *http.Client) *Service {
	s := &Service{reg: reg, webhook: &Webhook{Client: client, NodeID: nodeID}}
	for _, id := range reg.IDs() {
		if s.PushEnabled(id) {
			s.ids = append(s.ids, id)
		}
	}
	return s
}

// PushApps lists the apps with push configured.
func (s *Service) PushApps() []string { return s.ids }

// PushEnabled reports whether app has a push URL.
func (s *Service) PushEnabled(app string) bool {
	a, ok := s.reg.Lookup(app)
	return ok && a.Hooks != nil && a.Hooks.PushURL != ""
}

// SendPush hands n to the app's sender.
func (s *Service) SendPush(ctx context.Context, n conversation.PushNotification) error {
	a, ok := s.reg.Lookup(n.App)
	if !ok || !s.PushEnabled(n.App) {
		return fmt.Errorf("push: app %q has no push configured", n.App)
	}
	return s.webhook.Send(ctx, a, n)
}

// Webhook posts notifications to the app's push URL, signed like hooks.
type Webhook struct {
	// Client sends the requests. Zero value means a client with a 10 s
	// timeout.
	Client *http.Client
	// NodeID names the sending node (X-Imnode-Node), for the push
	// service's logs.
	NodeID string
}

// Body is what the webhook receives (one request per message).
type Body struct {
	AppID      string         `json:"appId"`
	ConvID     string         `json:"convId"`
	MsgID      string         `json:"msgId"`
	From       string         `json:"fromClientId"`
	Timestamp  int64          `json:"timestamp"`
	Recipients []string       `json:"recipients"`
	Mentioned  []string       `json:"mentioned"`
	Payload    map[string]any `json:"payload"`
	Source     string         `json:"source"`
	ExpiresAt  int64          `json:"expiresAt"`
	Attempt    int            `json:"attempt"`
	// IdempotencyKeys maps each recipient to its key (message id +
	// ":" + recipient): a repeat of a key is the same push.
	IdempotencyKeys map[string]string `json:"idempotencyKeys"`
}

// Send posts n. Any 2xx answer accepts it.
func (w *Webhook) Send(ctx context.Context, app *apps.App, n conversation.PushNotification) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	b := Body{AppID: app.ID, ConvID: n.ConvID, MsgID: n.MsgID, From: n.From, Timestamp: n.Timestamp,
		Recipients: n.Recipients, Mentioned: n.Mentioned, Payload: n.Payload, Source: n.Source, ExpiresAt: n.ExpiresAt,
		Attempt: n.Attempt, IdempotencyKeys: map[string]string{}}
	if b.Mentioned == nil {
		b.Mentioned = []string{}
	}
	for _, r := range n.Recipients {
		b.IdempotencyKeys[r] = conversation.IdempotencyKey(n.MsgID, r)
	}
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("push: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, app.Hooks.PushURL, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-LC-Id", app.ID)
	req.Header.Set("X-LC-Hook-Key", app.Hooks.Secret)
	req.Header.Set("X-LC-Hook-Timestamp", ts)
	req.Header.Set("X-LC-Hook-Signature", hooks.Sign(app.Hooks.Secret, ts, data))
	req.Header.Set("Idempotency-Key", n.MsgID)
	if w.NodeID != "" {
		req.Header.Set("X-Imnode-Node", w.NodeID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push: %s answered HTTP %d", app.Hooks.PushURL, resp.StatusCode)
	}
	return nil
}

var _ conversation.PushSender = (*Service)(nil)
