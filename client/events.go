package client

import (
	"time"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Event is anything an IMClient reports asynchronously: pushes from the
// server and connection state changes. Switch on the concrete type.
// Events are values owned by the receiver.
type Event interface{ isEvent() }

// MessageEvent is a message pushed to this client (the SDK's MESSAGE). The
// client has already queued the receiver ack unless LoginOptions.NoAutoAck.
type MessageEvent struct{ Message *Message }

// MembershipKind names a membership or moderation push.
type MembershipKind string

// Membership kinds, named after the JS SDK events (LEANCLOUD-RTM.md 8).
const (
	Invited          MembershipKind = "invited"          // conv/joined: you were added
	Kicked           MembershipKind = "kicked"           // conv/left: you were removed or left
	MembersJoined    MembershipKind = "membersjoined"    // conv/members_joined
	MembersLeft      MembershipKind = "membersleft"      // conv/members_left
	Blocked          MembershipKind = "blocked"          // conv/blocked
	Unblocked        MembershipKind = "unblocked"        // conv/unblocked
	MembersBlocked   MembershipKind = "membersblocked"   // conv/members_blocked
	MembersUnblocked MembershipKind = "membersunblocked" // conv/members_unblocked
	Muted            MembershipKind = "muted"            // conv/shutuped: you were silenced
	Unmuted          MembershipKind = "unmuted"          // conv/unshutuped
	MembersMuted     MembershipKind = "membersmuted"     // conv/members_shutuped
	MembersUnmuted   MembershipKind = "membersunmuted"   // conv/members_unshutuped
)

var membershipOps = map[pb.OpType]MembershipKind{
	pb.OpType_joined:             Invited,
	pb.OpType_left:               Kicked,
	pb.OpType_members_joined:     MembersJoined,
	pb.OpType_members_left:       MembersLeft,
	pb.OpType_blocked:            Blocked,
	pb.OpType_unblocked:          Unblocked,
	pb.OpType_members_blocked:    MembersBlocked,
	pb.OpType_members_unblocked:  MembersUnblocked,
	pb.OpType_shutuped:           Muted,
	pb.OpType_unshutuped:         Unmuted,
	pb.OpType_members_shutuped:   MembersMuted,
	pb.OpType_members_unshutuped: MembersUnmuted,
}

// MembershipEvent reports a membership or moderation change in a
// conversation. Members is set for the plural kinds; By is the initiator.
type MembershipEvent struct {
	Kind           MembershipKind
	ConversationID string
	Members        []string
	By             string
	At             time.Time // udate, zero if absent
}

// InfoUpdatedEvent is conv/updated (the SDK's CONVERSATION_INFO_UPDATED):
// Attributes is the change set as sent (dot paths and __op operations
// included), Modified the resulting values of the changed keys.
type InfoUpdatedEvent struct {
	ConversationID string
	Attributes     map[string]any
	Modified       map[string]any
	By             string
	At             time.Time
}

// MemberInfoUpdatedEvent is conv/member_info_changed: Member's role is now
// Role.
type MemberInfoUpdatedEvent struct {
	ConversationID string
	Member         string
	Role           string
	By             string
}

// UnreadEvent is an unread summary (after login, or after another device of
// this client read).
type UnreadEvent struct {
	NotifTime     time.Time
	Conversations []UnreadCount
}

// UnreadCount is one conversation of an UnreadEvent.
type UnreadCount struct {
	ConversationID string
	Count          int
	Mentioned      bool
	// LastMessage is the newest message if the server reported it.
	LastMessage *Message
}

// ReceiptEvent is a delivery (Read false) or read receipt for a message this
// client sent with Receipt set.
type ReceiptEvent struct {
	ConversationID string
	MessageID      string
	From           string
	At             time.Time
	Read           bool
}

// PatchEvent is patch/modify: a message was edited, or recalled (Recall).
type PatchEvent struct {
	Message *Message
	Recall  bool
	// Code and Reason are set when the server (not the sender) changed it.
	Code   int64
	Reason string
}

// ConflictEvent: the session was kicked by a newer login with the same tag
// (session/closed 4111). The IMClient is closed.
type ConflictEvent struct{ Reason, Detail string }

// CloseEvent: the session ended on the server side (kicked by the app, a
// refused re-login, a fatal close code, or reconnect disabled). The IMClient
// is closed.
type CloseEvent struct {
	Code   int32
	Reason string
	Detail string
}

// DisconnectEvent: the socket dropped; reconnection starts. Goaway reports a
// server-requested reconnect.
type DisconnectEvent struct {
	Code   uint16
	Goaway bool
}

// ScheduleEvent: reconnect attempt Attempt (0-based) will start after Delay.
type ScheduleEvent struct {
	Attempt int
	Delay   time.Duration
}

// RetryEvent: reconnect attempt Attempt is starting.
type RetryEvent struct{ Attempt int }

// ReconnectEvent: the socket is back and this session is open again.
type ReconnectEvent struct{}

// ReconnectErrorEvent: re-login after a reconnect failed for a transport
// reason; the Conn keeps trying.
type ReconnectErrorEvent struct{ Err error }

// UnknownEvent carries a push the client does not interpret.
type UnknownEvent struct{ Command *pb.GenericCommand }

func (MessageEvent) isEvent()           {}
func (MembershipEvent) isEvent()        {}
func (InfoUpdatedEvent) isEvent()       {}
func (MemberInfoUpdatedEvent) isEvent() {}
func (UnreadEvent) isEvent()            {}
func (ReceiptEvent) isEvent()           {}
func (PatchEvent) isEvent()             {}
func (ConflictEvent) isEvent()          {}
func (CloseEvent) isEvent()             {}
func (DisconnectEvent) isEvent()        {}
func (ScheduleEvent) isEvent()          {}
func (RetryEvent) isEvent()             {}
func (ReconnectEvent) isEvent()         {}
func (ReconnectErrorEvent) isEvent()    {}
func (UnknownEvent) isEvent()           {}
