package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/imcluster/imcluster/node/presence"
	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// handleRequest serves peer requests, each at the package that owns its
// method (package wire numbers them). Garbage is answered with a
// non-retryable error (and logged by the transport), never a crash.
func (c *Cluster) handleRequest(ctx context.Context, req *transport.Request) ([]byte, error) {
	switch {
	case req.Method == wire.Ping:
		return nil, nil
	case req.Method == wire.Command || req.Method == wire.Will:
		if c.router == nil {
			return nil, wire.ErrNotReady
		}
		if req.Method == wire.Will {
			return nil, c.router.HandleWill(ctx, req)
		}
		return c.router.HandleCommand(ctx, req)
	case slices.Contains(replica.Methods, req.Method):
		return c.rep.HandleRequest(ctx, req)
	case slices.Contains(presence.Requests, req.Method):
		return c.hub.HandleRequest(ctx, req)
	}
	return nil, fmt.Errorf("cluster: unknown method %d", req.Method)
}

// handleMessage serves one-way peer messages; it must not block.
func (c *Cluster) handleMessage(msg *transport.Message) {
	var err error
	switch {
	case msg.Method == wire.MsgSessionGone:
		if c.router != nil {
			err = c.router.HandleSessionGone(msg)
		}
	case slices.Contains(replica.Messages, msg.Method):
		err = c.rep.HandleMessage(msg.From, msg.Method, msg.Payload)
	case slices.Contains(presence.Messages, msg.Method):
		err = c.hub.HandleMessage(msg)
	default:
		err = fmt.Errorf("cluster: unknown message %d", msg.Method)
	}
	if err != nil {
		c.met.badMessages.Inc()
		c.log.Debug("Dropping bad peer message", "from", msg.From, "method", msg.Method, "err", err)
	}
}
