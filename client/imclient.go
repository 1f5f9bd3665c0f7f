package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Signature is a login or conversation-action signature produced by the
// app's signature service (LEANCLOUD-RTM.md 3.1.4).
type Signature struct {
	Signature string
	Timestamp int64
	Nonce     string
}

// SignatureFactory signs a login of clientID.
type SignatureFactory func(ctx context.Context, clientID string) (Signature, error)

// ConversationSignatureFactory signs a conversation action: action is
// "create" (conversationID empty), "invite" or "kick"; members are sorted.
type ConversationSignatureFactory func(ctx context.Context, conversationID, clientID string, members []string, action string) (Signature, error)

// LoginOptions configures Conn.Login. The zero value logs in as a plain
// multi-device client without signature.
type LoginOptions struct {
	// Tag enables single-device login for (clientID, Tag): a new login kicks
	// the older session (which receives a ConflictEvent).
	Tag string
	// Reconnect sends r=true like the SDK's isReconnect: re-login without
	// kicking other devices; tag, deviceId and signature are then not sent.
	Reconnect bool
	// SessionToken logs in with a token from an earlier session (st). If the
	// server rejects it with 4112 the login is retried once without it.
	SessionToken string
	// DeviceID is sent as sessionMessage.deviceId on first login.
	DeviceID string
	// Signature signs the login when the app requires it.
	Signature SignatureFactory
	// ConversationSignature signs create/add/remove when the app requires it.
	ConversationSignature ConversationSignatureFactory
	// EventQueueSize is the capacity of Events(). Zero means
	// DefaultEventQueueSize (1024).
	EventQueueSize int
	// OnEvent, if set, receives every event synchronously on the socket's
	// read goroutine instead of the Events channel. It must not block or
	// call back into the client synchronously; it is meant for tools that
	// need exact receive times.
	OnEvent func(Event)
	// NoAutoAck disables receiver acks for pushed messages (delivery
	// receipts then never reach the senders). Acks are batched per
	// conversation every Config.AckInterval.
	NoAutoAck bool
}

// IMClient is one logged-in session (the SDK's IMClient). It is safe for
// concurrent use. Its events arrive on Events() (or LoginOptions.OnEvent).
type IMClient struct {
	conn    *Conn
	id      string
	opts    LoginOptions
	events  chan Event
	dropped atomic.Uint64

	// ackMu guards acks, the receiver acks waiting for the next flush
	// (bounded by the number of conversations with new messages).
	ackMu sync.Mutex
	acks  map[string]ackRange

	// emitMu serializes producers of events so that drop-oldest is atomic
	// and no event is sent after the channel is closed.
	emitMu     sync.Mutex
	eventsDone bool
	// handlerDone stops OnEvent calls once the session has ended.
	handlerDone atomic.Bool

	// mu guards the session state below.
	mu struct {
		sync.Mutex
		st                  string
		stExpiry            time.Time // zero: never expires
		lastUnreadNotifTime int64
		lastPatchTime       int64
		// notifCursor is the serverTs of the newest reliable notification
		// seen (seeded by the first login), for /1.1/rtm/notifications.
		notifCursor int64
		closed      bool
	}
}

// Login opens a session for clientID on c (session/open). An empty clientID
// logs in anonymously; the server assigns the id (see ID). It fails with an
// *Error if the server refuses (4102 bad signature, 4103 bad id, 4111
// conflict, ...).
func (c *Conn) Login(ctx context.Context, clientID string, opts LoginOptions) (*IMClient, error) {
	if opts.EventQueueSize <= 0 {
		opts.EventQueueSize = DefaultEventQueueSize
	}
	cl := &IMClient{conn: c, id: clientID, opts: opts}
	if opts.OnEvent == nil {
		cl.events = make(chan Event, opts.EventQueueSize)
	}
	cl.mu.st = opts.SessionToken
	cl.mu.lastPatchTime = time.Now().UnixMilli()
	if clientID != "" && c.clientByID(clientID) != nil {
		return nil, fmt.Errorf("client: %q is already logged in on this connection", clientID)
	}
	cmd, err := cl.openCommand(ctx, opts.Reconnect, true)
	if err != nil {
		return nil, err
	}
	_, err = c.request(ctx, cmd, cl.openedHook)
	if err != nil && isCode(err, protocol.ErrSessionTokenExpired.Code) && opts.SessionToken != "" {
		cl.clearToken()
		if cmd, err = cl.openCommand(ctx, opts.Reconnect, true); err != nil {
			return nil, err
		}
		_, err = c.request(ctx, cmd, cl.openedHook)
	}
	if err != nil {
		c.removeClient(cl)
		return nil, fmt.Errorf("client: login %q: %w", clientID, err)
	}
	return cl, nil
}

// openCommand builds session/open. On a re-login path (reconnect) tag,
// deviceId and signature are not sent, as in the JS SDK.
func (cl *IMClient) openCommand(ctx context.Context, relogin, first bool) (*pb.GenericCommand, error) {
	cl.mu.Lock()
	sm := &pb.SessionCommand{
		Ua:            new(userAgent),
		R:             new(relogin),
		ConfigBitmap:  proto.Int64(configBitmap),
		LastPatchTime: new(cl.mu.lastPatchTime),
	}
	if cl.mu.lastUnreadNotifTime != 0 {
		sm.LastUnreadNotifTime = new(cl.mu.lastUnreadNotifTime)
	}
	if cl.mu.st != "" && (cl.mu.stExpiry.IsZero() || time.Now().Before(cl.mu.stExpiry)) {
		sm.St = new(cl.mu.st)
	}
	cl.mu.Unlock()
	if first && !relogin {
		if cl.opts.Tag != "" {
			sm.Tag = new(cl.opts.Tag)
		}
		if cl.opts.DeviceID != "" {
			sm.DeviceId = new(cl.opts.DeviceID)
		}
		if cl.opts.Signature != nil && sm.St == nil {
			sig, err := cl.opts.Signature(ctx, cl.id)
			if err != nil {
				return nil, fmt.Errorf("client: login signature: %w", err)
			}
			sm.S, sm.T, sm.N = new(sig.Signature), new(sig.Timestamp), new(sig.Nonce)
		}
	}
	cmd := &pb.GenericCommand{
		Cmd:            pb.CommandType_session.Enum(),
		Op:             pb.OpType_open.Enum(),
		AppId:          new(cl.conn.cfg.AppID),
		SessionMessage: sm,
	}
	if cl.id != "" {
		cmd.PeerId = new(cl.id)
	}
	return cmd, nil
}

// openedHook runs on the read goroutine when session/open is answered, so
// the session is routable before the unread push that follows.
func (cl *IMClient) openedHook(resp *pb.GenericCommand) {
	if resp.GetCmd() != pb.CommandType_session || resp.GetOp() != pb.OpType_opened {
		return
	}
	if cl.id == "" {
		cl.id = resp.GetPeerId()
	}
	cl.mu.Lock()
	sm := resp.GetSessionMessage()
	if sm.GetSt() != "" {
		cl.mu.st = sm.GetSt()
		cl.mu.stExpiry = time.Time{}
		if ttl := sm.GetStTtl(); ttl > 0 {
			cl.mu.stExpiry = time.Now().Add(time.Duration(ttl) * time.Second)
		}
	}
	if ts := resp.GetServerTs(); ts > cl.mu.lastPatchTime {
		cl.mu.lastPatchTime = ts
	}
	if cl.mu.notifCursor == 0 {
		cl.mu.notifCursor = resp.GetServerTs()
	}
	cl.mu.Unlock()
	cl.conn.addClient(cl) // false on re-login: already registered
}

// reopen re-logs the session in on a fresh socket: r=true with the session
// token, and once more without it if the token is refused (4112).
func (cl *IMClient) reopen(ctx context.Context, s *socket) error {
	cmd, err := cl.openCommand(ctx, true, false)
	if err != nil {
		return err
	}
	_, err = cl.conn.roundTrip(ctx, s, cmd, cl.openedHook)
	if err != nil && isCode(err, protocol.ErrSessionTokenExpired.Code) && cmd.GetSessionMessage().St != nil {
		cl.clearToken()
		if cmd, err = cl.openCommand(ctx, true, false); err != nil {
			return err
		}
		_, err = cl.conn.roundTrip(ctx, s, cmd, cl.openedHook)
	}
	return err
}

func (cl *IMClient) clearToken() {
	cl.mu.Lock()
	cl.mu.st, cl.mu.stExpiry = "", time.Time{}
	cl.mu.Unlock()
}

// ID returns the client id (server-assigned for anonymous logins).
func (cl *IMClient) ID() string { return cl.id }

// Conn returns the connection hosting this session.
func (cl *IMClient) Conn() *Conn { return cl.conn }

// SessionToken returns the current session token (st) and its expiry (zero
// if it does not expire), for a later Login with LoginOptions.SessionToken.
func (cl *IMClient) SessionToken() (string, time.Time) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.mu.st, cl.mu.stExpiry
}

// Events returns the event channel. It is bounded (LoginOptions.
// EventQueueSize); when it is full the oldest queued event is discarded to
// make room and DroppedEvents is incremented, so a slow consumer loses old
// events but never stalls the connection. The channel is closed when the
// session ends (Close, Conn.Close, kick). Nil when LoginOptions.OnEvent is
// set.
func (cl *IMClient) Events() <-chan Event { return cl.events }

// DroppedEvents returns how many events were discarded because Events() was
// full.
func (cl *IMClient) DroppedEvents() uint64 { return cl.dropped.Load() }

// emit delivers ev to the handler or the queue (drop oldest when full).
func (cl *IMClient) emit(ev Event) {
	if h := cl.opts.OnEvent; h != nil {
		if !cl.handlerDone.Load() {
			h(ev)
		}
		return
	}
	cl.emitMu.Lock()
	defer cl.emitMu.Unlock()
	if cl.eventsDone {
		return
	}
	for {
		select {
		case cl.events <- ev:
			return
		default:
		}
		select {
		case <-cl.events:
			cl.dropped.Add(1)
		default:
		}
	}
}

// shutdown closes the event channel; the session is gone.
func (cl *IMClient) shutdown() {
	cl.mu.Lock()
	cl.mu.closed = true
	cl.mu.Unlock()
	cl.handlerDone.Store(true)
	cl.emitMu.Lock()
	defer cl.emitMu.Unlock()
	if !cl.eventsDone {
		cl.eventsDone = true
		if cl.events != nil {
			close(cl.events)
		}
	}
}

// terminate ends the session after a server-side close and emits ev last.
func (cl *IMClient) terminate(ev Event) {
	cl.conn.removeClient(cl)
	cl.emit(ev)
	cl.shutdown()
}

func (cl *IMClient) isClosed() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.mu.closed
}

// request sends a session-scoped request (peerId set).
func (cl *IMClient) request(ctx context.Context, cmd *pb.GenericCommand) (*pb.GenericCommand, error) {
	if cl.isClosed() {
		return nil, ErrClosed
	}
	cmd.PeerId = new(cl.id)
	return cl.conn.request(ctx, cmd, nil)
}

// fire sends a session-scoped frame that has no response.
func (cl *IMClient) fire(cmd *pb.GenericCommand) error {
	if cl.isClosed() {
		return ErrClosed
	}
	cmd.PeerId = new(cl.id)
	cl.conn.fireAndForget(cmd)
	return nil
}

// Close logs the session out (session/close) and closes its event channel.
// The socket stays open for the other sessions of the Conn.
func (cl *IMClient) Close(ctx context.Context) error {
	if cl.isClosed() {
		return nil
	}
	cl.flushAcks()
	_, err := cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_close.Enum()})
	cl.conn.removeClient(cl)
	cl.shutdown()
	if err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("client: logout %q: %w", cl.id, err)
	}
	return nil
}

// OnlineStatus returns which of ids (at most 20) are online (session/query).
func (cl *IMClient) OnlineStatus(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	resp, err := cl.request(ctx, &pb.GenericCommand{
		Cmd:            pb.CommandType_session.Enum(),
		Op:             pb.OpType_query.Enum(),
		SessionMessage: &pb.SessionCommand{SessionPeerIds: ids},
	})
	if err != nil {
		return nil, err
	}
	return resp.GetSessionMessage().GetOnlineSessionPeerIds(), nil
}

// RefreshSessionToken asks for a new session token (session/refresh).
func (cl *IMClient) RefreshSessionToken(ctx context.Context) (string, error) {
	st, _ := cl.SessionToken()
	resp, err := cl.request(ctx, &pb.GenericCommand{
		Cmd:            pb.CommandType_session.Enum(),
		Op:             pb.OpType_refresh.Enum(),
		SessionMessage: &pb.SessionCommand{Ua: new(userAgent), St: new(st)},
	})
	if err != nil {
		return "", err
	}
	sm := resp.GetSessionMessage()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.mu.st = sm.GetSt()
	cl.mu.stExpiry = time.Time{}
	if sm.GetStTtl() > 0 {
		cl.mu.stExpiry = time.Now().Add(time.Duration(sm.GetStTtl()) * time.Second)
	}
	return cl.mu.st, nil
}
