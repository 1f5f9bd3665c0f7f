package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/transport"
)

// Router is the gateway's engine in a cluster: it runs each command at the
// coordinator of the shard the command touches (conversation.Engine.Route
// says which) and everything else here.
func (c *Cluster) Router() *Router { return (*Router)(c) }

// Router implements the gateway's Engine interface.
type Router Cluster

func (r *Router) c() *Cluster { return (*Cluster)(r) }

// Handle runs req for caller at the coordinators of the shards it touches.
// Failures to reach a coordinator become the protocol's retryable 4200.
func (r *Router) Handle(ctx context.Context, caller conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	c := r.c()
	var resp *pb.GenericCommand
	for _, part := range c.engine.Route(caller, req) {
		var err error
		if part.Anywhere {
			resp, err = c.engine.Handle(ctx, caller, part.Req)
		} else {
			resp, err = c.command(ctx, part.Shard, caller, part.Req)
		}
		if err != nil {
			return nil, clientError(err)
		}
	}
	return resp, nil
}

// clientError maps cluster failures to the protocol's retryable error and
// passes protocol errors through. The detail names the kind of failure, not
// node names or addresses.
func clientError(err error) error {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case transport.IsRetryable(err):
		detail := "the cluster cannot serve this conversation right now, retry"
		if errors.Is(err, ErrQuorum) || strings.Contains(err.Error(), "write quorum not reached") {
			detail = "write quorum not reached: the message was not acknowledged, retry"
		}
		return protocol.ErrUnavailable.WithDetail("%s", detail)
	}
	return err
}

// command runs req at shard's coordinator. It retries, within ctx, only
// failures that prove the command did not run (not coordinating, epoch
// changing, peer unreachable before sending): a command is not idempotent.
func (c *Cluster) command(ctx context.Context, shard uint16, caller conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	var e enc
	e.str(caller.App)
	e.str(caller.ClientID)
	e.u64(uint64(caller.Session))
	e.i64(caller.ConfigBitmap)
	e.bytes(raw)
	e.bool(false) // not proxied yet
	payload := e.b
	backoff := 20 * time.Millisecond
	// Waiting for a coordinator (roster converging, a replica catching up)
	// is bounded well inside the client's timeout: then the client gets the
	// retryable error.
	giveUp := time.Now().Add(2 * c.requestTimeout())
	for {
		var resp *pb.GenericCommand
		err := c.onCoordinatorOnce(ctx, shard, func() error {
			var err error
			resp, err = c.engine.Handle(ctx, caller, req)
			return notCoordinating(err)
		}, func(ctx context.Context, to string) error {
			// Cap one attempt: a coordinator that does not answer (hung,
			// partitioned while gossip still sees it) costs this much, is
			// suspected, and the next commands go to another replica.
			ctx, cancel := context.WithTimeout(ctx, 2*c.requestTimeout())
			defer cancel()
			out, err := c.tr.Call(ctx, to, mCommand, payload)
			if err != nil {
				return err
			}
			resp, err = decodeCommandResult(out)
			return err
		}, notExecuted)
		if err == nil || !notExecuted(err) {
			return resp, err
		}
		if time.Now().Add(backoff).After(giveUp) || !sleepCtx(ctx, backoff) {
			return nil, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// notCoordinating turns the engine's "lease ran out before the timestamp
// was assigned" into ErrNotReady: nothing ran, the caller retries at the
// shard's coordinator.
func notCoordinating(err error) error {
	if errors.Is(err, conversation.ErrNotCoordinator) {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return err
}

// notExecuted reports errors after which the peer certainly did not run
// the request.
func notExecuted(err error) bool {
	if errors.Is(err, transport.ErrEpochMismatch) || errors.Is(err, transport.ErrUnavailable) ||
		errors.Is(err, transport.ErrQueueFull) || errors.Is(err, ErrNotReady) || errors.Is(err, ErrNoCoordinator) {
		return true
	}
	var re *transport.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Message, ErrNotReady.Error())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Result statuses of mCommand.
const (
	cmdOK       = 0
	cmdProtocol = 1
	cmdFailed   = 2
)

func (c *Cluster) serveCommand(ctx context.Context, d *dec) ([]byte, error) {
	payload := d.b
	caller := conversation.Caller{App: d.str(), ClientID: d.str(), Session: sessionID(d.u64()), ConfigBitmap: d.i64()}
	raw := d.bytes()
	proxied := d.bool()
	if err := d.done("command"); err != nil {
		return nil, err
	}
	req := &pb.GenericCommand{}
	if err := proto.Unmarshal(raw, req); err != nil {
		return nil, err
	}
	for _, part := range c.engine.Route(caller, req) {
		if part.Anywhere {
			continue
		}
		if err := c.servable(part.Shard, nil); err != nil {
			return nil, err
		}
		if !proxied {
			// The gateway's view of the shard's coordinator may differ
			// from ours (it suspects a replica we reach): if we know the
			// lease holder or a preferred coordinator, hand the command
			// to it, so one node serializes the conversation's writes.
			if out, ok := c.proxyCommand(ctx, part.Shard, payload); ok {
				return out, nil
			}
		}
		if !c.canCoordinate(part.Shard) {
			return nil, ErrNotReady
		}
	}
	resp, err := c.engine.Handle(ctx, caller, req)
	if err := notCoordinating(err); errors.Is(err, ErrNotReady) {
		return nil, err
	}
	var e enc
	var pe *protocol.Error
	switch {
	case err == nil:
		e.u64(cmdOK)
		if resp != nil {
			b, err := proto.Marshal(resp)
			if err != nil {
				return nil, err
			}
			e.bytes(b)
		}
	case errors.As(err, &pe):
		e.u64(cmdProtocol)
		e.u64(uint64(pe.Code))
		e.str(pe.Reason)
		e.str(pe.Detail)
		e.bool(pe.Temporary)
		e.strs(pe.Pids)
	case transport.IsRetryable(err):
		return nil, transport.Retry(err)
	default:
		c.log.Error("Command failed", "cmd", req.GetCmd().String(), "op", req.GetOp().String(), "err", err)
		e.u64(cmdFailed)
		e.str(err.Error())
	}
	return e.b, nil
}

// proxyCommand forwards a command payload (marked proxied) to the node
// this node knows holds the shard's lease (knownHolder), or, when it knows
// of none, to the shard's preferred coordinator, when that is not this
// node.
// It reports false when this node is that node or that node certainly did
// not run the command (this node then tries to stand in).
func (c *Cluster) proxyCommand(ctx context.Context, shard uint16, payload []byte) ([]byte, bool) {
	to := c.knownHolder(shard)
	if to == "" {
		if ids := c.coordinators(shard); len(ids) > 0 {
			to = ids[0]
		}
	}
	if to == "" || to == c.cfg.NodeID {
		return nil, false
	}
	fwd := append(slices.Clip(payload[:len(payload)-1]), 1) // proxied = true
	ctx, cancel := context.WithTimeout(ctx, 2*c.requestTimeout())
	defer cancel()
	out, err := c.tr.Call(ctx, to, mCommand, fwd)
	c.noteCall(to, err)
	if err != nil && notExecuted(err) {
		return nil, false
	}
	if err != nil {
		// It may have run there: answer with the retryable error rather
		// than running it twice.
		var e enc
		e.u64(cmdProtocol)
		pe := protocol.ErrUnavailable
		e.u64(uint64(pe.Code))
		e.str(pe.Reason)
		e.str("the conversation's coordinator did not answer, retry")
		e.bool(true)
		e.strs(nil)
		return e.b, true
	}
	return out, true
}

func decodeCommandResult(b []byte) (*pb.GenericCommand, error) {
	d := dec{b: b}
	switch d.u64() {
	case cmdOK:
		if len(d.b) == 0 {
			return nil, d.done("command result")
		}
		raw := d.bytes()
		if err := d.done("command result"); err != nil {
			return nil, err
		}
		resp := &pb.GenericCommand{}
		if err := proto.Unmarshal(raw, resp); err != nil {
			return nil, err
		}
		return resp, nil
	case cmdProtocol:
		pe := &protocol.Error{Code: int32(d.u64()), Reason: d.str(), Detail: d.str(), Temporary: d.bool(), Pids: d.strs()}
		if err := d.done("command error"); err != nil {
			return nil, err
		}
		return nil, pe
	default:
		msg := d.str()
		if err := d.done("command failure"); err != nil {
			return nil, err
		}
		return nil, errors.New(msg)
	}
}

// UnreadSummary implements the gateway's Engine: it reads the client's
// shard through the KV, from any node.
func (r *Router) UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error) {
	return r.c().engine.UnreadSummary(ctx, app, clientID, lastNotifTime)
}

// PatchesSince implements the gateway's Engine.
func (r *Router) PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error) {
	return r.c().engine.PatchesSince(ctx, app, clientID, since)
}

// SessionGone implements the gateway's Engine: the session's chat rooms
// and will messages live at the coordinators of the conversations it used,
// so every live node hears of it.
func (r *Router) SessionGone(app, clientID string, s conversation.SessionID, clean bool) {
	c := r.c()
	c.engine.SessionGone(app, clientID, s, clean)
	var e enc
	e.str(app)
	e.str(clientID)
	e.u64(uint64(s))
	e.bool(clean)
	for _, m := range c.snap.Load().Members {
		if m.ID != c.cfg.NodeID && m.Live && m.State.Owns() {
			_ = c.tr.Send(m.ID, msgSessionGone, e.b)
		}
	}
}

func sessionID(v uint64) conversation.SessionID { return conversation.SessionID(v) }
