// Package route is the one place that decides where a command runs (a
// client's, or the server API's: conversation.ServerAPI sends its writes
// here too): at the coordinator of the conversation shard the command
// touches (the conversation engine's Route names the shards), locally when
// this node coordinates it, else forwarded once over the peer transport.
package route

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Engine is the conversation engine as the router uses it.
type Engine interface {
	Route(c conversation.Caller, req *pb.GenericCommand) []conversation.Routed
	Handle(ctx context.Context, c conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error)
	UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error)
	PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error)
	SessionGone(app, clientID string, s conversation.SessionID, clean bool)
	// Idempotent reports whether running req twice has the effect and
	// answer of running it once.
	Idempotent(req *pb.GenericCommand) bool
	// SendWill stores and pushes a will message with its pre-assigned id
	// as the conversation's coordinator.
	SendWill(ctx context.Context, c conversation.Caller, dm *pb.DirectCommand, mid string) error
}

// Replicas is what the router asks this node's shard replicas.
type Replicas interface {
	// Servable reports (ErrNotReady) whether this node may seek to
	// coordinate shard.
	Servable(shard uint16, key []byte) error
	// CanCoordinate reports whether this node holds shard's lease,
	// acquiring it if it may.
	CanCoordinate(shard uint16) bool
	// KnownHolder returns the node this node believes holds shard's lease.
	KnownHolder(shard uint16) string
	// RequestTimeout bounds one data-path request to a peer.
	RequestTimeout() time.Duration
}

// Peers is what the router needs from the cluster.
type Peers interface {
	// Coordinators returns the live replicas of shard in preference order
	// (suspected ones last). The slice may be shared: do not modify it.
	Coordinators(shard uint16) []string
	// Owners returns the other live members that own shards.
	Owners() []string
	NoteCall(peer string, err error)
	Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error)
	Send(to string, method uint16, payload []byte) error
}

// Config configures a Router.
type Config struct {
	// NodeID is this node's id. Required.
	NodeID string
	// Engine, Replicas and Peers are required.
	Engine   Engine
	Replicas Replicas
	Peers    Peers
	// Async runs a task in the background without blocking (dropped when
	// its queue is full). Required.
	Async func(func())
	// Logger is the parent logger. Zero means slog.Default().
	Logger *slog.Logger
}

// Router runs each command at the coordinator of the shard it touches and
// everything else here. It implements the gateway's Engine.
type Router struct {
	cfg Config
	log *slog.Logger
}

// New returns a Router.
func New(cfg Config) (*Router, error) {
	if cfg.NodeID == "" || cfg.Engine == nil || cfg.Replicas == nil || cfg.Peers == nil || cfg.Async == nil {
		return nil, errors.New("route: NodeID, Engine, Replicas, Peers and Async are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Router{cfg: cfg, log: cfg.Logger.With("component", "route")}, nil
}

// Handle runs req for caller at the coordinators of the shards it touches.
// Failures to reach a coordinator are retried until shortly before ctx's
// deadline (retryDeadline) and only then become the protocol's retryable
// 4200.
func (r *Router) Handle(ctx context.Context, caller conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	var resp *pb.GenericCommand
	for _, part := range r.cfg.Engine.Route(caller, req) {
		var err error
		if part.Anywhere {
			resp, err = r.cfg.Engine.Handle(ctx, caller, part.Req)
		} else {
			resp, err = r.command(ctx, part.Shard, caller, part.Req)
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
		detail := protocol.DetailNoCoordinator
		if errors.Is(err, wire.ErrQuorum) {
			detail = protocol.DetailQuorum
		}
		return protocol.ErrUnavailable.WithDetail("%s", detail)
	}
	return err
}

// command runs req at shard's coordinator. It retries, within ctx and the
// retry budget, failures that prove the command did not run (not
// coordinating, epoch changing, peer unreachable before sending), and, for
// an idempotent command (a send with a de-duplication token, acks, reads),
// also those after which it may have run (the coordinator died or did not
// answer, or its write quorum failed): a coordinator that goes away while a
// lease moves is a pause, not an error.
func (r *Router) command(ctx context.Context, shard uint16, caller conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	// The forwarded payload is built at the first attempt that leaves
	// this node: a command this node coordinates is not marshalled.
	var payload []byte
	retry := notExecuted
	if r.cfg.Engine.Idempotent(req) {
		retry = mayRetryIdempotent
	}
	backoff := 20 * time.Millisecond
	timeout := r.cfg.Replicas.RequestTimeout()
	giveUp := retryDeadline(ctx, time.Now(), timeout)
	for {
		var resp *pb.GenericCommand
		err := r.onCoordinatorOnce(ctx, shard, func() error {
			var err error
			resp, err = r.cfg.Engine.Handle(ctx, caller, req)
			return storageFull(notCoordinating(err))
		}, func(ctx context.Context, to string) error {
			// Cap one attempt: a coordinator that does not answer (hung,
			// partitioned while gossip still sees it) costs this much, is
			// suspected, and the next commands go to another replica. The
			// last attempt ends with the budget, so the retryable error is
			// answered before the caller's deadline.
			if payload == nil {
				raw, err := proto.Marshal(req)
				if err != nil {
					return err
				}
				payload = encodeCommand(caller, raw)
			}
			ctx, cancel := context.WithTimeout(ctx, min(2*timeout, time.Until(giveUp)))
			defer cancel()
			out, err := r.call(ctx, to, payload)
			if err != nil {
				return err
			}
			resp, err = decodeCommandResult(out)
			return err
		}, retry)
		if err == nil || !retry(err) {
			return resp, err
		}
		if time.Now().Add(backoff).After(giveUp) || !transport.Sleep(ctx, backoff) {
			return nil, err
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// answerMargin is what the retry budget leaves of the caller's deadline for
// the retryable answer to reach the client.
const answerMargin = 250 * time.Millisecond

// retryDeadline returns when command gives up waiting for a coordinator and
// answers the retryable 4200: shortly before ctx's deadline (the gateway's
// request timeout, 15 s, below the SDK's 20 s command timeout), so that a
// lease moving (a coordinator killed or partitioned: its lease runs out, a
// majority grants a new one, the new holder catches up and settles the
// writes left pending) is a pause inside the cluster, not an error. Without
// a deadline it is twice the peer request timeout.
func retryDeadline(ctx context.Context, now time.Time, requestTimeout time.Duration) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d.Add(-answerMargin)
	}
	return now.Add(2 * requestTimeout)
}

func (r *Router) call(ctx context.Context, to string, payload []byte) ([]byte, error) {
	out, err := r.cfg.Peers.Call(ctx, to, wire.Command, payload)
	return out, wire.Decode(err)
}

// onCoordinatorOnce tries the live replicas of shard in preference order
// (locally when this node is the one), moving on while the error proves the
// command did not run.
func (r *Router) onCoordinatorOnce(ctx context.Context, shard uint16, local func() error,
	remote func(ctx context.Context, to string) error, retry func(error) bool) error {
	var last error = wire.ErrNoCoordinator
	for _, id := range r.cfg.Peers.Coordinators(shard) {
		if id == r.cfg.NodeID {
			if !r.cfg.Replicas.CanCoordinate(shard) {
				last = wire.ErrNotReady
				continue
			}
			return local()
		}
		err := remote(ctx, id)
		r.cfg.Peers.NoteCall(id, err)
		if err == nil || !retry(err) {
			return err
		}
		last = err
	}
	return last
}

// encodeCaller writes the caller of a forwarded command or will message.
func encodeCaller(e *wire.Enc, c conversation.Caller) {
	e.Str(c.App)
	e.Str(c.ClientID)
	e.U64(uint64(c.Session))
	e.I64(c.ConfigBitmap)
}

// decodeCaller reads what encodeCaller wrote.
func decodeCaller(d *wire.Dec) conversation.Caller {
	return conversation.Caller{App: d.Str(), ClientID: d.Str(), Session: conversation.SessionID(d.U64()), ConfigBitmap: d.I64()}
}

func encodeCommand(caller conversation.Caller, raw []byte) []byte {
	var e wire.Enc
	encodeCaller(&e, caller)
	e.Bytes(raw)
	e.Bool(false) // not proxied yet
	return e.B
}

// notCoordinating turns the engine's "lease ran out before the timestamp
// was assigned" into ErrNotReady: nothing ran, the caller retries at the
// shard's coordinator.
func notCoordinating(err error) error {
	if errors.Is(err, conversation.ErrNotCoordinator) {
		return wire.Wrap(wire.ErrNotReady, err)
	}
	return err
}

// storageFull turns a write the cluster refused for lack of storage
// (wire.ErrDiskLow: nothing was stored) into the protocol's error, which is
// answered as is, not retried.
func storageFull(err error) error {
	if errors.Is(err, wire.ErrDiskLow) {
		return protocol.ErrStorageFull
	}
	return err
}

// notExecuted reports errors after which the peer certainly did not run
// the request.
func notExecuted(err error) bool {
	return errors.Is(err, transport.ErrEpochMismatch) || errors.Is(err, transport.ErrUnavailable) ||
		errors.Is(err, transport.ErrQueueFull) || errors.Is(err, wire.ErrNotReady) || errors.Is(err, wire.ErrNoCoordinator)
}

// mayRetryIdempotent reports errors after which an idempotent command is
// tried again: those that prove it did not run, and those after which it
// may have run but was not answered (connection lost, timeout, the
// coordinator did not answer, its write quorum failed), but not an answer
// (protocol errors). A failed quorum is safe to retry: the coordinator
// steps down with the write in doubt, and no node serves the shard again
// before a resolution made the write visible on W replicas or dropped it
// (docs/replication.md, "In-doubt writes and terms"), so the retry finds
// the first attempt through its de-duplication record or stores it anew,
// never twice.
func mayRetryIdempotent(err error) bool {
	var pe *protocol.Error
	switch {
	case notExecuted(err), errors.Is(err, wire.ErrQuorum):
		return true
	case errors.As(err, &pe):
		return false
	}
	return transport.IsRetryable(err)
}

// Result statuses of wire.Command.
const (
	cmdOK       = 0
	cmdProtocol = 1
	cmdFailed   = 2
)

// HandleCommand serves a peer's wire.Command: it runs the command here if
// this node coordinates its shards, or hands it once to the node that does.
func (r *Router) HandleCommand(ctx context.Context, req *transport.Request) ([]byte, error) {
	d := wire.Dec{B: req.Payload}
	payload := d.B
	caller := decodeCaller(&d)
	raw := d.Bytes()
	proxied := d.Bool()
	if err := d.Done("command"); err != nil {
		return nil, err
	}
	cmd := &pb.GenericCommand{}
	if err := proto.Unmarshal(raw, cmd); err != nil {
		return nil, err
	}
	for _, part := range r.cfg.Engine.Route(caller, cmd) {
		if part.Anywhere {
			continue
		}
		if err := r.cfg.Replicas.Servable(part.Shard, nil); err != nil {
			return nil, err
		}
		if !proxied {
			// The gateway's view of the shard's coordinator may differ
			// from ours (it suspects a replica we reach): if we know the
			// lease holder or a preferred coordinator, hand the command
			// to it, so one node serializes the conversation's writes.
			if out, ok, err := r.proxyCommand(ctx, part.Shard, payload, r.cfg.Engine.Idempotent(cmd)); ok {
				return out, err
			}
		}
		if !r.cfg.Replicas.CanCoordinate(part.Shard) {
			return nil, wire.ErrNotReady
		}
	}
	resp, err := r.cfg.Engine.Handle(ctx, caller, cmd)
	if err := notCoordinating(err); errors.Is(err, wire.ErrNotReady) {
		return nil, err
	}
	return r.encodeResult(cmd, resp, storageFull(err))
}

func (r *Router) encodeResult(cmd, resp *pb.GenericCommand, err error) ([]byte, error) {
	var e wire.Enc
	var pe *protocol.Error
	switch {
	case err == nil:
		e.U64(cmdOK)
		if resp != nil {
			b, err := proto.Marshal(resp)
			if err != nil {
				return nil, err
			}
			e.Bytes(b)
		}
	case errors.As(err, &pe):
		encodeProtocolError(&e, pe)
	case transport.IsRetryable(err):
		return nil, transport.Retry(err)
	default:
		r.log.Error("Command failed", "cmd", cmd.GetCmd().String(), "op", cmd.GetOp().String(), "err", err)
		e.U64(cmdFailed)
		e.Str(err.Error())
	}
	return e.B, nil
}

func encodeProtocolError(e *wire.Enc, pe *protocol.Error) {
	e.U64(cmdProtocol)
	e.U64(uint64(pe.Code))
	e.Str(pe.Reason)
	e.Str(pe.Detail)
	e.Bool(pe.Temporary)
	e.Strs(pe.Pids)
	if pe.AppCode != 0 || pe.AppMsg != "" {
		// An app hook's rejection; older decoders never see these (they
		// come only from hooks, which came with the fields).
		e.I64(int64(pe.AppCode))
		e.Str(pe.AppMsg)
	}
}

// proxyCommand forwards a command payload (marked proxied) to the node
// this node knows holds the shard's lease (KnownHolder), or, when it knows
// of none, to the shard's preferred coordinator, when that is not this
// node.
// It reports false when this node is that node or that node certainly did
// not run the command (this node then tries to stand in). When that node
// may have run it without answering, an idempotent command gets the
// retryable error back (the gateway runs it again), any other the
// protocol's retryable 4200 rather than running it twice.
func (r *Router) proxyCommand(ctx context.Context, shard uint16, payload []byte, idempotent bool) ([]byte, bool, error) {
	to := r.cfg.Replicas.KnownHolder(shard)
	if to == "" {
		if ids := r.cfg.Peers.Coordinators(shard); len(ids) > 0 {
			to = ids[0]
		}
	}
	if to == "" || to == r.cfg.NodeID {
		return nil, false, nil
	}
	fwd := append(slices.Clip(payload[:len(payload)-1]), 1) // proxied = true
	ctx, cancel := context.WithTimeout(ctx, 2*r.cfg.Replicas.RequestTimeout())
	defer cancel()
	out, err := r.call(ctx, to, fwd)
	r.cfg.Peers.NoteCall(to, err)
	if err != nil && notExecuted(err) {
		return nil, false, nil
	}
	if err != nil && idempotent && mayRetryIdempotent(err) {
		return nil, true, transport.Retry(err)
	}
	if err != nil {
		// It may have run there: answer with the retryable error rather
		// than running it twice.
		var e wire.Enc
		pe := *protocol.ErrUnavailable
		pe.Detail = protocol.DetailCoordinatorSilent
		pe.Temporary = true
		pe.Pids = nil
		encodeProtocolError(&e, &pe)
		return e.B, true, nil
	}
	return out, true, nil
}

func decodeCommandResult(b []byte) (*pb.GenericCommand, error) {
	d := wire.Dec{B: b}
	switch d.U64() {
	case cmdOK:
		if len(d.B) == 0 {
			return nil, d.Done("command result")
		}
		raw := d.Bytes()
		if err := d.Done("command result"); err != nil {
			return nil, err
		}
		resp := &pb.GenericCommand{}
		if err := proto.Unmarshal(raw, resp); err != nil {
			return nil, err
		}
		return resp, nil
	case cmdProtocol:
		pe := &protocol.Error{Code: int32(d.U64()), Reason: d.Str(), Detail: d.Str(), Temporary: d.Bool(), Pids: d.Strs()}
		if len(d.B) > 0 {
			pe.AppCode, pe.AppMsg = int32(d.I64()), d.Str()
		}
		if err := d.Done("command error"); err != nil {
			return nil, err
		}
		return nil, pe
	default:
		msg := d.Str()
		if err := d.Done("command failure"); err != nil {
			return nil, err
		}
		return nil, errors.New(msg)
	}
}

// UnreadSummary implements the gateway's Engine: it reads the client's
// shard through the KV, from any node.
func (r *Router) UnreadSummary(ctx context.Context, app, clientID string, lastNotifTime int64) (*pb.UnreadCommand, error) {
	return r.cfg.Engine.UnreadSummary(ctx, app, clientID, lastNotifTime)
}

// PatchesSince implements the gateway's Engine.
func (r *Router) PatchesSince(ctx context.Context, app, clientID string, since int64) (*pb.PatchCommand, error) {
	return r.cfg.Engine.PatchesSince(ctx, app, clientID, since)
}

// SessionGone implements the gateway's Engine: the session's chat rooms
// and will messages live at the coordinators of the conversations it used,
// so every live node hears of it.
func (r *Router) SessionGone(app, clientID string, s conversation.SessionID, clean bool) {
	r.cfg.Engine.SessionGone(app, clientID, s, clean)
	var e wire.Enc
	e.Str(app)
	e.Str(clientID)
	e.U64(uint64(s))
	e.Bool(clean)
	for _, id := range r.cfg.Peers.Owners() {
		_ = r.cfg.Peers.Send(id, wire.MsgSessionGone, e.B)
	}
}

// HandleSessionGone serves a peer's wire.MsgSessionGone (on the transport's
// reader: the engine runs in the background).
func (r *Router) HandleSessionGone(msg *transport.Message) error {
	d := wire.Dec{B: msg.Payload}
	app, client := d.Str(), d.Str()
	s := d.U64()
	clean := d.Bool()
	if err := d.Done("session gone"); err != nil {
		return err
	}
	// SessionGone asks the registry whether the client is still online:
	// not on the connection's reader.
	r.cfg.Async(func() { r.cfg.Engine.SessionGone(app, client, conversation.SessionID(s), clean) })
	return nil
}
