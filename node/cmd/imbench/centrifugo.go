package main

// The Centrifugo driver: Centrifugo's client protocol (v2) in its JSON form
// over WebSocket, enough of it to connect with an HS256 connection token,
// subscribe to a channel, publish to a channel and receive publications.
// `make bench-compare` runs the same shapes through it against Centrifugo as
// through the LeanCloud driver against imnode, so both share the pacing,
// histograms, CPU accounting and report of bench.go.
//
// Every frame from the server holds one or more JSON objects separated by
// newlines: replies to commands (with the command's id), pushes (no id, a
// "push" field) and the server's ping, an empty object, which the client
// answers with an empty object. One client per WebSocket connection (the
// protocol has no multiplexing); the client of user "imbench-<run>-<i>"
// subscribes to the channel of the same name.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// cfCommand is one client-to-server command; exactly one of the request
// fields is set.
type cfCommand struct {
	ID        uint32              `json:"id"`
	Connect   *cfConnectRequest   `json:"connect,omitempty"`
	Subscribe *cfSubscribeRequest `json:"subscribe,omitempty"`
	Publish   *cfPublishRequest   `json:"publish,omitempty"`
}

type cfConnectRequest struct {
	Token string `json:"token"`
	Name  string `json:"name,omitempty"`
}

type cfSubscribeRequest struct {
	Channel string `json:"channel"`
}

type cfPublishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// cfReply is one server-to-client object: a reply (ID set), a push, or the
// server's ping (nothing set).
type cfReply struct {
	ID    uint32   `json:"id,omitempty"`
	Error *cfError `json:"error,omitempty"`
	Push  *cfPush  `json:"push,omitempty"`
	// Connect is the connect result; only checked for presence.
	Connect json.RawMessage `json:"connect,omitempty"`
}

// cfError is a protocol error reply; it is the error a failed request
// returns.
type cfError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

func (e *cfError) Error() string { return fmt.Sprintf("centrifugo: %d %s", e.Code, e.Message) }

type cfPush struct {
	Channel string         `json:"channel"`
	Pub     *cfPublication `json:"pub,omitempty"`
}

type cfPublication struct {
	Data json.RawMessage `json:"data"`
}

// isPing reports whether r is the server's ping (an empty object).
func (r *cfReply) isPing() bool {
	return r.ID == 0 && r.Error == nil && r.Push == nil && r.Connect == nil
}

// parseCfFrame splits a server frame into its newline-separated objects.
func parseCfFrame(frame []byte) ([]cfReply, error) {
	var out []cfReply
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		if len(line) == 0 {
			continue
		}
		var r cfReply
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("centrifugo: bad frame %.80q: %w", line, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// hs256Token returns a JWT over the claims JSON signed with HMAC-SHA256, the
// connection token format Centrifugo accepts with client.token.hmac_secret_key.
func hs256Token(secret string, claims []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// connectionToken is the token of user sub, valid for a day.
func connectionToken(secret, sub string, now time.Time) string {
	claims, _ := json.Marshal(struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}{sub, now.Add(24 * time.Hour).Unix()})
	return hs256Token(secret, claims)
}

// errCfClosed is returned by requests on a closed connection.
var errCfClosed = errors.New("centrifugo: connection closed")

// cfConn is one Centrifugo client on its own WebSocket connection. Its read
// goroutine (gws's ReadLoop) is owned by the cfConn and ends when close
// closes the socket; close waits for it.
type cfConn struct {
	gws.BuiltinEventHandler
	ws    *gws.Conn
	onPub func(data []byte)
	// dropped counts frames that could not be parsed.
	dropped atomic.Uint64

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan cfReply // by command id; buffered 1
	closed  bool

	done chan struct{} // closed when the read loop ends
}

// dialCf opens a WebSocket to url; onPub gets the data of every publication
// pushed to it (on the read goroutine).
func dialCf(ctx context.Context, url string, timeout time.Duration, onPub func(data []byte)) (*cfConn, error) {
	c := &cfConn{onPub: onPub, pending: map[uint32]chan cfReply{}, done: make(chan struct{})}
	ws, _, err := gws.NewClient(c, &gws.ClientOption{
		Addr:             url,
		HandshakeTimeout: timeout,
		Recovery:         gws.Recovery,
		NewDialer: func() (gws.Dialer, error) {
			return &ctxDialer{ctx: ctx, d: net.Dialer{Timeout: timeout}}, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("centrifugo: dial %s: %w", url, err)
	}
	c.ws = ws
	go func() {
		defer close(c.done)
		ws.ReadLoop()
	}()
	return c, nil
}

// ctxDialer makes gws's dial honour a context.
type ctxDialer struct {
	ctx context.Context //nolint:containedctx // gws's Dialer interface has no context parameter
	d   net.Dialer
}

func (d *ctxDialer) Dial(network, addr string) (net.Conn, error) {
	return d.d.DialContext(d.ctx, network, addr)
}

// OnClose fails every pending request.
func (c *cfConn) OnClose(*gws.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
}

// OnMessage dispatches replies to their requests and publications to onPub,
// and answers the server's ping.
func (c *cfConn) OnMessage(ws *gws.Conn, m *gws.Message) {
	defer func() { _ = m.Close() }()
	replies, err := parseCfFrame(m.Bytes())
	if err != nil {
		c.dropped.Add(1)
	}
	for i := range replies {
		r := &replies[i]
		switch {
		case r.isPing():
			_ = ws.WriteMessage(gws.OpcodeText, []byte("{}"))
		case r.ID != 0:
			c.mu.Lock()
			ch := c.pending[r.ID]
			delete(c.pending, r.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- *r
			}
		case r.Push != nil && r.Push.Pub != nil:
			c.onPub(r.Push.Pub.Data)
		}
	}
}

// request sends cmd with a fresh id and waits for its reply.
func (c *cfConn) request(ctx context.Context, cmd cfCommand) (cfReply, error) {
	ch := make(chan cfReply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return cfReply{}, errCfClosed
	}
	c.nextID++
	cmd.ID = c.nextID
	c.pending[cmd.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, cmd.ID)
		c.mu.Unlock()
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		forget()
		return cfReply{}, err
	}
	if err := c.ws.WriteMessage(gws.OpcodeText, b); err != nil {
		forget()
		return cfReply{}, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return cfReply{}, errCfClosed
		}
		if r.Error != nil {
			return r, r.Error
		}
		return r, nil
	case <-ctx.Done():
		forget()
		return cfReply{}, ctx.Err()
	}
}

func (c *cfConn) connect(ctx context.Context, token string) error {
	r, err := c.request(ctx, cfCommand{Connect: &cfConnectRequest{Token: token, Name: "imbench"}})
	if err == nil && r.Connect == nil {
		err = errors.New("centrifugo: connect reply without a connect result")
	}
	return err
}

func (c *cfConn) subscribe(ctx context.Context, channel string) error {
	_, err := c.request(ctx, cfCommand{Subscribe: &cfSubscribeRequest{Channel: channel}})
	return err
}

// publish publishes content (a JSON string) to channel and waits for the
// server's acknowledgement.
func (c *cfConn) publish(ctx context.Context, channel, content string) error {
	data, err := json.Marshal(content)
	if err != nil {
		return err
	}
	_, err = c.request(ctx, cfCommand{Publish: &cfPublishRequest{Channel: channel, Data: data}})
	return err
}

// close closes the socket and waits for the read loop to end.
func (c *cfConn) close() {
	_ = c.ws.NetConn().Close()
	<-c.done
}

// centrifugoDriver runs the shapes over Centrifugo: pairs (client i
// subscribes to its own channel and publishes to its partner's), room
// (clients 1..N-1 subscribe to one channel, client 0 publishes to it without
// subscribing) and idle (every client connected and subscribed to its own
// channel).
type centrifugoDriver struct {
	b     *bench
	conns []*cfConn
}

func (d *centrifugoDriver) channel(i int) string { return fmt.Sprintf("imbench-%s-%d", d.b.runID, i) }

func (d *centrifugoDriver) setup(ctx context.Context) ([]sender, int, error) {
	b := d.b
	d.conns = make([]*cfConn, b.cfg.Clients)
	room := "imbench-" + b.runID + "-room"
	onPub := func(data []byte) {
		var s string
		if json.Unmarshal(data, &s) == nil {
			b.onContent(s)
		}
	}
	err := b.parallel(ctx, b.cfg.Clients, func(ctx context.Context, i int) error {
		c, err := dialCf(ctx, b.cfg.URLs[b.place.clientURL(i)], dialTimeout, onPub)
		if err != nil {
			return err
		}
		d.conns[i] = c
		rctx, cancel := context.WithTimeout(ctx, setupTimeout)
		defer cancel()
		if err := c.connect(rctx, connectionToken(b.cfg.CentrifugoSecret, d.channel(i), time.Now())); err != nil {
			return fmt.Errorf("connect client %d: %w", i, err)
		}
		ch := d.channel(i)
		if b.cfg.Shape == shapeRoom {
			if i == 0 {
				return nil // the publisher does not subscribe
			}
			ch = room
		}
		if err := c.subscribe(rctx, ch); err != nil {
			return fmt.Errorf("subscribe client %d to %s: %w", i, ch, err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	switch b.cfg.Shape {
	case shapePairs:
		senders := make([]sender, 0, b.cfg.Clients)
		for i := range b.cfg.Clients / 2 * 2 {
			c, to := d.conns[i], d.channel(i^1)
			senders = append(senders, func(ctx context.Context, content string) error { return c.publish(ctx, to, content) })
		}
		return senders, 1, nil
	case shapeRoom:
		c := d.conns[0]
		return []sender{func(ctx context.Context, content string) error { return c.publish(ctx, room, content) }},
			b.cfg.Clients - 1, nil
	}
	return nil, 0, nil
}

func (d *centrifugoDriver) droppedFrames() uint64 {
	var n uint64
	for _, c := range d.conns {
		if c != nil {
			n += c.dropped.Load()
		}
	}
	return n
}

func (d *centrifugoDriver) misplacedConns() uint64 { return 0 }

func (d *centrifugoDriver) close() {
	var wg sync.WaitGroup
	for _, c := range d.conns {
		if c != nil {
			wg.Go(c.close)
		}
	}
	wg.Wait()
}
