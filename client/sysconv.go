package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// System conversations (LeanCloud's service conversations): clients find
// them with ServiceConversationQuery, subscribe and unsubscribe themselves,
// receive what the app broadcasts and sends them (MessageEvent), read their
// history and send to them (to the app's hook; nothing reaches other
// subscribers). The app's back end manages them with ServerAPI.

// ServiceConversationQuery returns a query over system conversations (any
// client finds them, subscribed or not).
func (cl *IMClient) ServiceConversationQuery() *ConversationQuery {
	return cl.Query().EqualTo("sys", true)
}

// Subscribe subscribes the client to a system conversation.
func (c *Conversation) Subscribe(ctx context.Context) error { return c.Join(ctx) }

// Unsubscribe ends the client's subscription.
func (c *Conversation) Unsubscribe(ctx context.Context) error { return c.Quit(ctx) }

// ServerAPI calls an app's server-side REST API with the master key (what
// an app's back end does). Safe for concurrent use.
type ServerAPI struct {
	base      string
	appID     string
	masterKey string
	http      *http.Client
}

// NewServerAPI returns a ServerAPI for the node (or load balancer) at base
// ("https://rtm.example.com").
func NewServerAPI(base, appID, masterKey string) *ServerAPI {
	return &ServerAPI{base: base, appID: appID, masterKey: masterKey, http: &http.Client{Timeout: restTimeout}}
}

// do sends one request; out receives the JSON answer.
func (s *ServerAPI) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("client: encode %s: %w", path, err)
		}
		rd = bytes.NewReader(data)
	}
	u := s.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-LC-Id", s.appID)
	req.Header.Set("X-LC-Key", s.masterKey+",master")
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if out == nil {
		out = &json.RawMessage{}
	}
	return decodeREST(resp, path, out)
}

const servicePath = "/1.2/rtm/service-conversations"

// CreateServiceConversation creates a system conversation with the given
// columns (e.g. {"name": "Notices"}) and returns its id.
func (s *ServerAPI) CreateServiceConversation(ctx context.Context, columns map[string]any) (string, error) {
	var out struct {
		ObjectID string `json:"objectId"`
	}
	if columns == nil {
		columns = map[string]any{}
	}
	err := s.do(ctx, http.MethodPost, servicePath, nil, columns, &out)
	return out.ObjectID, err
}

// UpdateServiceConversation sets columns (a nil value deletes one).
func (s *ServerAPI) UpdateServiceConversation(ctx context.Context, id string, columns map[string]any) error {
	return s.do(ctx, http.MethodPut, servicePath+"/"+url.PathEscape(id), nil, columns, nil)
}

// DeleteServiceConversation deletes a system conversation and its
// subscriptions.
func (s *ServerAPI) DeleteServiceConversation(ctx context.Context, id string) error {
	return s.do(ctx, http.MethodDelete, servicePath+"/"+url.PathEscape(id), nil, nil, nil)
}

// AddSubscriber subscribes clientID; RemoveSubscriber unsubscribes it.
func (s *ServerAPI) AddSubscriber(ctx context.Context, id, clientID string) error {
	return s.do(ctx, http.MethodPost, servicePath+"/"+url.PathEscape(id)+"/subscribers", nil,
		map[string]string{"client_id": clientID}, nil)
}

// RemoveSubscriber unsubscribes clientID.
func (s *ServerAPI) RemoveSubscriber(ctx context.Context, id, clientID string) error {
	return s.do(ctx, http.MethodDelete, servicePath+"/"+url.PathEscape(id)+"/subscribers/"+url.PathEscape(clientID), nil, nil, nil)
}

// Subscriber is one subscription.
type Subscriber struct {
	ClientID     string
	SubscribedAt time.Time
}

// Subscribers lists up to limit (1-50) subscribers after the client id
// after ("" = from the start), in client id order.
func (s *ServerAPI) Subscribers(ctx context.Context, id string, limit int, after string) ([]Subscriber, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("client_id", after)
	}
	var rows []struct {
		Subscriber string `json:"subscriber"`
		Timestamp  int64  `json:"timestamp"`
	}
	if err := s.do(ctx, http.MethodGet, servicePath+"/"+url.PathEscape(id)+"/subscribers", q, nil, &rows); err != nil {
		return nil, err
	}
	out := make([]Subscriber, 0, len(rows))
	for _, r := range rows {
		out = append(out, Subscriber{ClientID: r.Subscriber, SubscribedAt: millis(r.Timestamp)})
	}
	return out, nil
}

// SubscriberCount returns the number of subscribers.
func (s *ServerAPI) SubscriberCount(ctx context.Context, id string) (int, error) {
	var out struct {
		Count int `json:"count"`
	}
	err := s.do(ctx, http.MethodGet, servicePath+"/"+url.PathEscape(id)+"/subscribers/count", nil, nil, &out)
	return out.Count, err
}

// Sent identifies a message the server API sent.
type Sent struct {
	ID        string
	Timestamp time.Time
}

func (s *ServerAPI) send(ctx context.Context, path string, body map[string]any) (Sent, error) {
	var out struct {
		ID string `json:"msg-id"`
		T  int64  `json:"timestamp"`
	}
	err := s.do(ctx, http.MethodPost, path, nil, body, &out)
	return Sent{ID: out.ID, Timestamp: millis(out.T)}, err
}

// Broadcast sends content (a text or a typed message's JSON) from
// fromClient to every subscriber; pushData is the offline push payload (may
// be nil).
func (s *ServerAPI) Broadcast(ctx context.Context, id, fromClient, content string, pushData map[string]any) (Sent, error) {
	body := map[string]any{"from_client": fromClient, "message": content}
	if pushData != nil {
		body["push"] = pushData
	}
	return s.send(ctx, servicePath+"/"+url.PathEscape(id)+"/broadcasts", body)
}

// SendToClients sends content from fromClient to up to 20 clients,
// subscribed or not.
func (s *ServerAPI) SendToClients(ctx context.Context, id, fromClient string, to []string, content string, transient bool) (Sent, error) {
	return s.send(ctx, servicePath+"/"+url.PathEscape(id)+"/messages",
		map[string]any{"from_client": fromClient, "to_clients": to, "message": content, "transient": transient})
}
