package main

// The LeanCloud driver: imnode's own protocol through the client package.
// Clients share cfg.Conns connections (the protocol multiplexes sessions on
// a socket), placed over the URLs as placement.go says.

import (
	"context"
	"fmt"
	"strings"

	"github.com/imcluster/imcluster/client"
)

// leanCloudDriver runs the shapes over imnode: pairs (one 1:1 conversation
// per pair of clients, both sides sending), room (client 0 creates a chat
// room, every other client joins it, client 0 sends) and idle (every client
// logged in).
type leanCloudDriver struct {
	b     *bench
	conns []*client.Conn
}

func (d *leanCloudDriver) setup(ctx context.Context) ([]sender, int, error) {
	conns, err := d.dialAll(ctx)
	d.conns = conns
	if err != nil {
		return nil, 0, err
	}
	clients, err := d.loginAll(ctx, conns)
	if err != nil {
		return nil, 0, err
	}
	switch d.b.cfg.Shape {
	case shapePairs:
		convs, err := d.pairAll(ctx, clients)
		if err != nil {
			return nil, 0, err
		}
		senders := make([]sender, len(convs))
		for i, conv := range convs {
			senders[i] = convSender(conv)
		}
		return senders, 1, nil
	case shapeRoom:
		conv, err := d.room(ctx, clients)
		if err != nil {
			return nil, 0, err
		}
		return []sender{convSender(conv)}, len(clients) - 1, nil
	}
	return nil, 0, nil
}

func convSender(conv *client.Conversation) sender {
	return func(ctx context.Context, content string) error {
		_, err := conv.Send(ctx, client.NewRaw(content))
		return err
	}
}

func (d *leanCloudDriver) droppedFrames() uint64 {
	var n uint64
	for _, c := range d.conns {
		n += c.DroppedFrames()
	}
	return n
}

func (d *leanCloudDriver) misplacedConns() uint64 { return d.b.misplaced.Load() }

func (d *leanCloudDriver) close() {
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// dialAll opens cfg.Conns connections, spreading them over the URLs as
// b.place says; the other URLs follow in rotated order as failover targets.
func (d *leanCloudDriver) dialAll(ctx context.Context) ([]*client.Conn, error) {
	b := d.b
	conns := make([]*client.Conn, 0, b.cfg.Conns)
	for j := range b.cfg.Conns {
		u := b.place.ConnURL[j]
		urls := append(append([]string(nil), b.cfg.URLs[u:]...), b.cfg.URLs[:u]...)
		cc := client.DefaultConfig(b.cfg.AppID, urls...)
		cc.Subprotocol = b.cfg.Subprotocol
		cc.Logger = b.cfg.Logger
		c, err := client.Dial(ctx, cc)
		if err != nil {
			return conns, fmt.Errorf("dial connection %d: %w", j, err)
		}
		// The client moves the URL it connected to to the end of its list.
		if got := c.URLs(); len(got) > 0 && got[len(got)-1] != urls[0] {
			b.misplaced.Add(1)
			b.cfg.Logger.Warn("Connection fell back to another URL", "conn", j, "want", urls[0], "got", got[len(got)-1])
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func (d *leanCloudDriver) loginAll(ctx context.Context, conns []*client.Conn) ([]*client.IMClient, error) {
	b := d.b
	clients := make([]*client.IMClient, b.cfg.Clients)
	onEvent := func(ev client.Event) {
		if me, ok := ev.(client.MessageEvent); ok && strings.HasPrefix(me.Message.Content, contentPrefix) {
			b.onContent(me.Message.Content)
		}
	}
	err := b.parallel(ctx, b.cfg.Clients, func(ctx context.Context, i int) error {
		id := fmt.Sprintf("bench-%s-%d", b.runID, i)
		cl, err := conns[b.place.ClientConn[i]].Login(ctx, id, client.LoginOptions{OnEvent: onEvent})
		if err != nil {
			return fmt.Errorf("login %s: %w", id, err)
		}
		clients[i] = cl
		return nil
	})
	return clients, err
}

// pairAll creates one 1:1 conversation per pair (2i, 2i+1) and returns a
// handle for each side.
func (d *leanCloudDriver) pairAll(ctx context.Context, clients []*client.IMClient) ([]*client.Conversation, error) {
	pairs := len(clients) / 2
	convs := make([]*client.Conversation, 2*pairs)
	err := d.b.parallel(ctx, pairs, func(ctx context.Context, i int) error {
		a, z := clients[2*i], clients[2*i+1]
		conv, err := a.CreateConversation(ctx, client.CreateOptions{Members: []string{z.ID()}, Unique: true, Name: "imbench"})
		if err != nil {
			return fmt.Errorf("create conversation %s-%s: %w", a.ID(), z.ID(), err)
		}
		convs[2*i], convs[2*i+1] = conv, z.Conversation(conv.ID())
		return nil
	})
	return convs, err
}

// room creates a chat room as client 0 and joins every other client to it;
// it returns client 0's handle.
func (d *leanCloudDriver) room(ctx context.Context, clients []*client.IMClient) (*client.Conversation, error) {
	conv, err := clients[0].CreateConversation(ctx, client.CreateOptions{Transient: true, Name: "imbench-room"})
	if err != nil {
		return nil, fmt.Errorf("create chat room: %w", err)
	}
	err = d.b.parallel(ctx, len(clients)-1, func(ctx context.Context, i int) error {
		if err := clients[i+1].Conversation(conv.ID()).Join(ctx); err != nil {
			return fmt.Errorf("join %s to the room: %w", clients[i+1].ID(), err)
		}
		return nil
	})
	return conv, err
}
