package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/wire"
)

// dispatch runs one command on the connection's worker goroutine and writes
// its response, if the command expects one (carries i).
func (g *Gateway) dispatch(c *conn, req *pb.GenericCommand) {
	start := time.Now()
	m := g.metrics.forCmd(req.GetCmd())
	m.count.Inc()
	resp := g.execute(c, req)
	m.seconds.Observe(time.Since(start).Seconds())
	if resp == nil || req.I == nil {
		return
	}
	if resp.GetCmd() == pb.CommandType_error {
		g.metrics.commandErrors.WithLabelValues(req.GetCmd().String(), strconv.Itoa(int(resp.GetErrorMessage().GetCode()))).Inc()
	}
	if f, ok := c.encode(resp); ok {
		c.respond(f)
	}
}

func (g *Gateway) execute(c *conn, req *pb.GenericCommand) (resp *pb.GenericCommand) {
	defer func() {
		// A bug in a handler must cost one request, not the node: answer
		// 4200 and keep serving. The stack goes to the log once.
		if r := recover(); r != nil {
			g.metrics.panics.Inc()
			g.log.Error("Command handler panicked", "cmd", req.GetCmd().String(), "op", req.GetOp().String(),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp = protocol.ErrorResponse(req, protocol.ErrInternal)
		}
	}()
	switch req.GetCmd() {
	case pb.CommandType_echo:
		r := protocol.Response(req, pb.CommandType_echo, nil)
		r.Service, r.PeerId = nil, nil
		return r
	case pb.CommandType_session:
		return g.sessionCommand(c, req)
	case pb.CommandType_login:
		// LiveQuery (service 1) login: out of scope; acknowledge so the
		// plugin's login resolves.
		r := protocol.Response(req, pb.CommandType_loggedin, nil)
		r.Service = proto.Int32(req.GetService())
		return r
	case pb.CommandType_logout:
		r := protocol.Response(req, pb.CommandType_loggedout, nil)
		r.Service = proto.Int32(req.GetService())
		return r
	case pb.CommandType_report:
		return protocol.Response(req, pb.CommandType_report, protocol.Op(pb.OpType_uploaded))
	default:
		if conversation.IsCommand(req.GetCmd()) {
			// The engine's command table (conversation/commands.go).
			return g.engineCommand(c, req)
		}
		return protocol.ErrorResponse(req, protocol.ErrUnparseableRawMessage.WithDetail("unsupported command %s", req.GetCmd()))
	}
}

// engineCommand hands a session command to the engine.
func (g *Gateway) engineCommand(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	s := c.sessionFor(req.PeerId)
	if s == nil {
		return protocol.ErrorResponse(req, protocol.ErrSessionRequired.WithDetail("no open session for this request"))
	}
	if pe := g.checkPolicy(s.app, s.clientID, req); pe != nil {
		r := protocol.ErrorResponse(req, pe)
		r.PeerId = proto.String(s.clientID)
		return r
	}
	pe := g.allowClient(s, conversation.RateOf(req))
	if pe == nil && req.GetCmd() == pb.CommandType_conv && req.GetOp() == pb.OpType_query {
		pe = g.allowQuery(s)
	}
	if pe != nil {
		r := protocol.ErrorResponse(req, pe)
		r.PeerId = proto.String(s.clientID)
		return r
	}
	// The request deadline without a timer per command (requestCtx).
	ctx := newRequestCtx(g.ctx, time.Now().Add(g.cfg.RequestTimeout))
	defer ctx.release()
	caller := conversation.Caller{App: s.app.ID, ClientID: s.clientID, Session: s.id, ConfigBitmap: s.configBitmap}
	resp, err := g.engine.Handle(ctx, caller, req)
	if err != nil {
		return g.errorResponse(req, s.clientID, err)
	}
	if resp == nil {
		return nil
	}
	// The answer shares the request's i and the session's clientId instead
	// of copies: neither is written through a pointer once set.
	resp.I = req.I
	resp.PeerId = &s.clientID
	if resp.Service == nil {
		resp.Service = proto.Int32(protocol.ServiceIM)
	}
	return resp
}

// errorResponse maps an engine error to an error frame. Internal errors are
// logged here, once, and answered with a retryable 4200; a write refused
// for a full disk is answered "storage full", not logged.
func (g *Gateway) errorResponse(req *pb.GenericCommand, clientID string, err error) *pb.GenericCommand {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
	case errors.Is(err, context.DeadlineExceeded):
		pe = protocol.ErrUnavailable.WithDetail("request timed out")
	case errors.Is(err, context.Canceled):
		pe = protocol.ErrUnavailable.WithDetail("node shutting down")
	case errors.Is(err, wire.ErrDiskLow):
		// A write of the gateway's own (a login's session token) the
		// cluster refused for lack of storage: nothing was stored.
		pe = protocol.ErrStorageFull
	default:
		g.log.Error("Command failed", "cmd", req.GetCmd().String(), "op", req.GetOp().String(), "err", err)
		pe = protocol.ErrInternal
	}
	r := protocol.ErrorResponse(req, pe)
	r.PeerId = proto.String(clientID)
	return r
}

// sessionFor resolves the session a request belongs to: the one named by
// peerId, or the socket's first open session when peerId is absent.
func (c *conn) sessionFor(peerID *string) *clientSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	if peerID == nil {
		if len(c.sessions) == 0 {
			return nil
		}
		return c.sessions[0]
	}
	for _, s := range c.sessions {
		if s.clientID == *peerID {
			return s
		}
	}
	return nil
}

type gwsLogger struct{ l *slog.Logger }

func (g gwsLogger) Error(v ...any) { g.l.Error("WebSocket library error", "detail", v) }

func headerHasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}
