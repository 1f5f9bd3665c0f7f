package route

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// SendWill sends a will message (dm, with its pre-assigned id mid) for
// caller at the current coordinator of its conversation: the node that
// accepted the will holds it until the session drops, and may no longer
// coordinate the conversation by then. Like a command it waits, within the
// retry budget, while the lease moves; it is retried after a lost answer
// only when dm carries a de-duplication token.
func (r *Router) SendWill(ctx context.Context, caller conversation.Caller, dm *pb.DirectCommand, mid string) error {
	req := &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: dm}
	parts := r.cfg.Engine.Route(caller, req)
	if len(parts) != 1 || parts[0].Anywhere {
		return r.cfg.Engine.SendWill(ctx, caller, dm, mid)
	}
	shard := parts[0].Shard
	raw, err := proto.Marshal(dm)
	if err != nil {
		return err
	}
	var e wire.Enc
	encodeCaller(&e, caller)
	e.Bytes(raw)
	e.Str(mid)
	payload := e.B
	retry := notExecuted
	if r.cfg.Engine.Idempotent(req) {
		retry = mayRetryIdempotent
	}
	timeout := r.cfg.Replicas.RequestTimeout()
	giveUp := time.Now().Add(2 * timeout)
	backoff := 20 * time.Millisecond
	for {
		err := r.onCoordinatorOnce(ctx, shard, func() error {
			return notCoordinating(r.cfg.Engine.SendWill(ctx, caller, dm, mid))
		}, func(ctx context.Context, to string) error {
			ctx, cancel := context.WithTimeout(ctx, 2*timeout)
			defer cancel()
			_, err := r.cfg.Peers.Call(ctx, to, wire.Will, payload)
			return wire.Decode(err)
		}, retry)
		if err == nil || !retry(err) {
			return err
		}
		if time.Now().Add(backoff).After(giveUp) || !transport.Sleep(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// HandleWill serves a peer's wire.Will: this node sends the will message
// if it coordinates the conversation (ErrNotReady otherwise: the sender
// tries the next replica).
func (r *Router) HandleWill(ctx context.Context, req *transport.Request) error {
	d := wire.Dec{B: req.Payload}
	caller := decodeCaller(&d)
	raw := d.Bytes()
	mid := d.Str()
	if err := d.Done("will"); err != nil {
		return err
	}
	dm := &pb.DirectCommand{}
	if err := proto.Unmarshal(raw, dm); err != nil {
		return err
	}
	if mid == "" || dm.GetWill() {
		return errors.New("route: will without an id, or still marked will")
	}
	parts := r.cfg.Engine.Route(caller, &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), DirectMessage: dm})
	for _, part := range parts {
		if part.Anywhere {
			continue
		}
		if err := r.cfg.Replicas.Servable(part.Shard, nil); err != nil {
			return err
		}
		if !r.cfg.Replicas.CanCoordinate(part.Shard) {
			return wire.ErrNotReady
		}
	}
	err := notCoordinating(r.cfg.Engine.SendWill(ctx, caller, dm, mid))
	if transport.IsRetryable(err) {
		return transport.Retry(err)
	}
	return err
}
