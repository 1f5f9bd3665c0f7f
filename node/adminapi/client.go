package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds a request whose context has no deadline. Admin calls
// answer from memory on the node, so a few seconds means the node is stuck.
const DefaultTimeout = 5 * time.Second

// maxBody caps how much of an answer the client reads (1 MiB): a cluster view
// of a few hundred nodes and shards is far below that.
const maxBody = 1 << 20

// ErrUnauthorized is returned (wrapped in a StatusError) for 401 and 403 answers.
var ErrUnauthorized = errors.New("adminapi: unauthorized")

// StatusError is a non-2xx answer from the admin port.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Message is the ErrorResponse text, or the raw body.
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("adminapi: HTTP %d: %s", e.Code, e.Message)
}

// Unwrap maps authorization failures to ErrUnauthorized.
func (e *StatusError) Unwrap() error {
	if e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden {
		return ErrUnauthorized
	}
	return nil
}

// Client talks to one node's admin port. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the admin port at baseURL (for example
// "http://imc-0.imc-peers.ns.svc:8081"). token is sent as a bearer token when
// not empty. httpClient may be nil for http.DefaultClient.
func NewClient(baseURL, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: httpClient}
}

// BaseURL returns the admin base URL the client was made for.
func (c *Client) BaseURL() string { return c.base }

// Token returns the bearer token the client sends (empty: none), for
// callers that make their own requests to the admin port.
func (c *Client) Token() string { return c.token }

// Node returns GET /admin/v1/node.
func (c *Client) Node(ctx context.Context) (NodeStatus, error) {
	var out NodeStatus
	err := c.do(ctx, http.MethodGet, PathNode, nil, &out)
	return out, err
}

// Cluster returns GET /admin/v1/cluster.
func (c *Client) Cluster(ctx context.Context) (ClusterStatus, error) {
	var out ClusterStatus
	err := c.do(ctx, http.MethodGet, PathCluster, nil, &out)
	return out, err
}

// StartDrain posts /admin/v1/drain. It is idempotent on the node.
func (c *Client) StartDrain(ctx context.Context) (DrainStarted, error) {
	var out DrainStarted
	err := c.do(ctx, http.MethodPost, PathDrain, struct{}{}, &out)
	return out, err
}

// Drain returns GET /admin/v1/drain.
func (c *Client) Drain(ctx context.Context) (DrainStatus, error) {
	var out DrainStatus
	err := c.do(ctx, http.MethodGet, PathDrain, nil, &out)
	return out, err
}

// CancelDrain sends DELETE /admin/v1/drain: stop a drain in progress, or
// rejoin the roster (as joining) if the node already left. Idempotent.
func (c *Client) CancelDrain(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, PathDrain, nil, nil)
}

// Remove posts /admin/v1/remove for the dead node id.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, PathRemove, RemoveRequest{Node: id}, nil)
}

// Healthz returns nil when /healthz answers 2xx.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, PathHealthz, nil, nil)
}

// Readyz returns nil when /readyz answers 2xx.
func (c *Client) Readyz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, PathReadyz, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("adminapi: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("adminapi: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("adminapi: %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("adminapi: read %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(string(data))
		var er ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.Error != "" {
			msg = er.Error
		}
		return &StatusError{Code: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("adminapi: decode %s %s: %w", method, path, err)
	}
	return nil
}

// Shards calls GET /admin/v1/shards.
func (c *Client) Shards(ctx context.Context) (ShardsStatus, error) {
	var out ShardsStatus
	err := c.do(ctx, http.MethodGet, PathShards, nil, &out)
	return out, err
}

// DebugMessages calls GET /admin/v1/debug/messages for one conversation.
func (c *Client) DebugMessages(ctx context.Context, app, cid string) (DebugMessages, error) {
	var out DebugMessages
	q := url.Values{"app": {app}, "cid": {cid}}
	err := c.do(ctx, http.MethodGet, PathDebugMessages+"?"+q.Encode(), nil, &out)
	return out, err
}

// Faults calls POST /admin/v1/faults.
func (c *Client) Faults(ctx context.Context, req FaultRequest) error {
	return c.do(ctx, http.MethodPost, PathFaults, req, nil)
}

// Goaway calls POST /admin/v1/goaway.
func (c *Client) Goaway(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathGoaway, nil, nil)
}
