package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/session"
)

// MaxClientIDLength is the longest accepted client id (LeanCloud: 64).
const MaxClientIDLength = 64

// MaxQueryPeerIDs bounds session/query (LeanCloud: 20 ids).
const MaxQueryPeerIDs = 20

func (g *Gateway) sessionCommand(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	switch req.GetOp() {
	case pb.OpType_open:
		return g.open(c, req)
	case pb.OpType_close:
		return g.logout(c, req)
	case pb.OpType_query:
		return g.queryOnline(c, req)
	case pb.OpType_refresh:
		return g.refresh(c, req)
	default:
		return protocol.ErrorResponse(req, protocol.ErrUnparseableRawMessage.WithDetail("unsupported session op %s", req.GetOp()))
	}
}

// open implements session/open (LEANCLOUD-RTM.md section 3.1).
func (g *Gateway) open(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	app, ok := g.cfg.Apps.Lookup(req.GetAppId())
	if !ok {
		return protocol.ErrorResponse(req, protocol.ErrAppNotAvailable.WithDetail("unknown appId %q", req.GetAppId()))
	}
	if err := g.limits.allowLogin(app, c.ip, g.cfg.Now); err != nil {
		g.metrics.rateLimited.WithLabelValues("login").Inc()
		return protocol.ErrorResponse(req, err)
	}
	sm := req.GetSessionMessage()
	if sm == nil {
		sm = &pb.SessionCommand{}
	}
	clientID := req.GetPeerId()
	if req.PeerId == nil {
		clientID = anonymousID()
	}
	if err := validClientID(clientID); err != nil {
		return protocol.ErrorResponse(req, err)
	}
	var info session.Info
	switch {
	case sm.St != nil:
		var err error
		info, err = g.cfg.Tokens.Validate(app.ID, clientID, sm.GetSt())
		if errors.Is(err, session.ErrInvalidToken) {
			return protocol.ErrorResponse(req, protocol.ErrSessionTokenExpired)
		}
		if err != nil {
			return g.errorResponse(req, clientID, err)
		}
	case app.LoginSignature:
		msg := apps.LoginMessage(app.ID, clientID, sm.GetT(), sm.GetN())
		if err := app.Verify(msg, sm.GetS(), sm.GetT(), g.cfg.Now()); err != nil {
			return protocol.ErrorResponse(req, protocol.ErrSignatureFailed.WithDetail("%v", err))
		}
	}
	tag, deviceID := sm.GetTag(), sm.GetDeviceId()
	if tag == "" {
		tag = info.Tag
	}
	if deviceID == "" {
		deviceID = info.DeviceID
	}
	c.mu.Lock()
	full := len(c.sessions) >= g.cfg.MaxSessionsPerConn
	var same *clientSession
	for _, s := range c.sessions {
		if s.app.ID == app.ID && s.clientID == clientID {
			same = s
		}
	}
	c.mu.Unlock()
	if same == nil && full {
		return protocol.ErrorResponse(req, protocol.ErrInvalidLogin.WithDetail("at most %d sessions per connection", g.cfg.MaxSessionsPerConn))
	}
	if tag != "" {
		rivals, sameDevice := g.tagRivals(app.ID, clientID, tag, deviceID, same)
		if len(rivals) > 0 && sm.GetR() {
			return protocol.ErrorResponse(req, protocol.ErrSessionConflict.WithDetail("client %q is logged in with tag %q on another device", clientID, tag))
		}
		for _, s := range append(rivals, sameDevice...) {
			g.kick(s, protocol.ErrSessionConflict, "logged in on another device")
		}
	}
	if same != nil {
		// The same client logging in again on the same socket replaces its
		// old session.
		c.removeSession(same)
		g.endSession(same, true)
	}
	token, err := g.cfg.Tokens.Issue(app.ID, clientID, session.Info{Tag: tag, DeviceID: deviceID})
	if err != nil {
		return g.errorResponse(req, clientID, err)
	}
	s := &clientSession{
		id:           conversation.SessionID(g.nextSession.Add(1)),
		app:          app,
		clientID:     clientID,
		conn:         c,
		tag:          tag,
		deviceID:     deviceID,
		token:        token,
		configBitmap: sm.GetConfigBitmap(),
		limits:       g.limits.app(app, g.cfg.Now),
	}
	c.mu.Lock()
	c.sessions = append(c.sessions, s)
	c.loggedIn = true
	c.mu.Unlock()
	g.reg.add(s)
	if g.cfg.Presence != nil {
		g.cfg.Presence.Opened(app.ID, clientID, tag, deviceID, s.id)
	}

	resp := protocol.Response(req, pb.CommandType_session, protocol.Op(pb.OpType_opened))
	resp.PeerId = proto.String(clientID)
	resp.ServerTs = proto.Int64(g.cfg.Now().UnixMilli())
	resp.SessionMessage = &pb.SessionCommand{
		St:    proto.String(token),
		StTtl: proto.Int32(int32(g.cfg.Tokens.TTL().Seconds())),
	}
	g.afterLogin(s, sm)
	return resp
}

// afterLogin queues the post-login pushes (unread summary, then patches).
// The worker is busy with the open command, so they are written after the
// opened response.
func (g *Gateway) afterLogin(s *clientSession, sm *pb.SessionCommand) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RequestTimeout)
	defer cancel()
	unread, err := g.engine.UnreadSummary(ctx, s.app.ID, s.clientID, sm.GetLastUnreadNotifTime())
	if err != nil {
		g.log.Error("Computing unread summary", "client", s.clientID, "err", err)
	} else if unread != nil {
		p := protocol.Push(s.clientID, pb.CommandType_unread, nil)
		p.UnreadMessage = unread
		s.conn.pushCommand(p)
	}
	patches, err := g.engine.PatchesSince(ctx, s.app.ID, s.clientID, sm.GetLastPatchTime())
	if err != nil {
		g.log.Error("Loading patches", "client", s.clientID, "err", err)
	} else if patches != nil && len(patches.GetPatches()) > 0 {
		p := protocol.Push(s.clientID, pb.CommandType_patch, protocol.Op(pb.OpType_modify))
		p.PatchMessage = patches
		s.conn.pushCommand(p)
	}
}

// tagRivals returns the live sessions of clientID holding tag: those on
// other devices (a conflict) and those of the same device (a stale session
// the device replaces, e.g. after a network change).
func (g *Gateway) tagRivals(app, clientID, tag, deviceID string, same *clientSession) (rivals, sameDevice []*clientSession) {
	for _, s := range g.reg.sessions(app, clientID) {
		switch {
		case s == same || s.tag != tag:
		case deviceID != "" && s.deviceID == deviceID:
			sameDevice = append(sameDevice, s)
		default:
			rivals = append(rivals, s)
		}
	}
	return rivals, sameDevice
}

// KickTag closes this node's sessions of clientID holding tag, except
// session except: the client logged in with that tag on another node
// (4111 SESSION_CONFLICT, like a local conflict).
func (g *Gateway) KickTag(app, clientID, tag, deviceID string, except conversation.SessionID) {
	for _, s := range g.reg.sessions(app, clientID) {
		if s.id != except && s.tag == tag {
			g.kick(s, protocol.ErrSessionConflict, "logged in on another device")
		}
	}
}

// kick closes a session from the server side with a session/closed push.
func (g *Gateway) kick(s *clientSession, why *protocol.Error, detail string) {
	if !s.conn.removeSession(s) {
		return
	}
	p := protocol.Push(s.clientID, pb.CommandType_session, protocol.Op(pb.OpType_closed))
	p.SessionMessage = &pb.SessionCommand{Code: proto.Int32(why.Code), Reason: proto.String(why.Reason), Detail: proto.String(detail)}
	s.conn.pushCommand(p)
	g.endSession(s, true)
}

// Kick closes every session of a client with 4115 KICKED_BY_APP (admin API).
func (g *Gateway) Kick(app, clientID string) int {
	sessions := g.reg.sessions(app, clientID)
	for _, s := range sessions {
		g.kick(s, protocol.ErrKickedByApp, "kicked by the app")
	}
	return len(sessions)
}

// logout implements session/close.
func (g *Gateway) logout(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	resp := protocol.Response(req, pb.CommandType_session, protocol.Op(pb.OpType_closed))
	resp.SessionMessage = &pb.SessionCommand{} // Swift checks for the sub-message
	s := c.sessionFor(req.PeerId)
	if s == nil {
		return resp
	}
	resp.PeerId = proto.String(s.clientID)
	if c.removeSession(s) {
		g.endSession(s, true)
	}
	return resp
}

// queryOnline implements session/query.
func (g *Gateway) queryOnline(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	s := c.sessionFor(req.PeerId)
	if s == nil {
		return protocol.ErrorResponse(req, protocol.ErrSessionRequired)
	}
	if pe := g.allowClient(s, conversation.RateOp); pe != nil {
		r := protocol.ErrorResponse(req, pe)
		r.PeerId = proto.String(s.clientID)
		return r
	}
	ids := req.GetSessionMessage().GetSessionPeerIds()
	if len(ids) > MaxQueryPeerIDs {
		return protocol.ErrorResponse(req, protocol.ErrUnparseableRawMessage.WithDetail("session/query accepts at most %d ids, got %d", MaxQueryPeerIDs, len(ids)))
	}
	resp := protocol.Response(req, pb.CommandType_session, protocol.Op(pb.OpType_query_result))
	resp.PeerId = proto.String(s.clientID)
	online := g.reg.online(s.app.ID, ids)
	if g.cfg.Presence != nil {
		online = g.cfg.Presence.Online(s.app.ID, ids)
	}
	resp.SessionMessage = &pb.SessionCommand{OnlineSessionPeerIds: online}
	return resp
}

// refresh implements session/refresh: a new token for a valid old one.
func (g *Gateway) refresh(c *conn, req *pb.GenericCommand) *pb.GenericCommand {
	s := c.sessionFor(req.PeerId)
	if s == nil {
		return protocol.ErrorResponse(req, protocol.ErrSessionRequired)
	}
	info, err := g.cfg.Tokens.Validate(s.app.ID, s.clientID, req.GetSessionMessage().GetSt())
	if errors.Is(err, session.ErrInvalidToken) {
		return protocol.ErrorResponse(req, protocol.ErrSessionTokenExpired)
	}
	if err != nil {
		return g.errorResponse(req, s.clientID, err)
	}
	token, err := g.cfg.Tokens.Issue(s.app.ID, s.clientID, info)
	if err != nil {
		return g.errorResponse(req, s.clientID, err)
	}
	resp := protocol.Response(req, pb.CommandType_session, protocol.Op(pb.OpType_refreshed))
	resp.PeerId = proto.String(s.clientID)
	resp.SessionMessage = &pb.SessionCommand{St: proto.String(token), StTtl: proto.Int32(int32(g.cfg.Tokens.TTL().Seconds()))}
	return resp
}

// endSession unregisters a session that was already removed from its
// connection, revokes its token on a clean end, and tells the engine.
func (g *Gateway) endSession(s *clientSession, clean bool) {
	if !g.reg.remove(s) {
		return
	}
	if g.cfg.Presence != nil {
		g.cfg.Presence.Closed(s.app.ID, s.clientID, s.id)
	}
	if clean {
		if err := g.cfg.Tokens.Revoke(s.app.ID, s.clientID, s.token); err != nil {
			g.log.Error("Revoking session token", "client", s.clientID, "err", err)
		}
	}
	if g.engine != nil {
		g.engine.SessionGone(s.app.ID, s.clientID, s.id, clean)
	}
}

// removeSession detaches s from the connection and reports whether it was
// attached.
func (c *conn) removeSession(s *clientSession) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.sessions {
		if x == s {
			c.sessions = append(c.sessions[:i:i], c.sessions[i+1:]...)
			return true
		}
	}
	return false
}

func validClientID(id string) *protocol.Error {
	if id == "" || len(id) > MaxClientIDLength || !utf8.ValidString(id) {
		return protocol.ErrInvalidLogin.WithDetail("client id must be 1-%d characters of valid UTF-8", MaxClientIDLength)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return protocol.ErrInvalidLogin.WithDetail("client id contains a control character")
		}
	}
	return nil
}

func anonymousID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
