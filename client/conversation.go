package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// ConversationInfo is a snapshot of a conversation record (the
// _Conversation row). It is a value: later changes do not touch it.
type ConversationInfo struct {
	ID        string
	Name      string
	Creator   string
	Members   []string
	MutedBy   []string
	Transient bool // chat room
	System    bool
	Temporary bool
	Unique    bool
	UniqueID  string
	CreatedAt time.Time
	UpdatedAt time.Time
	// LastMessageAt is lm, zero if no message yet.
	LastMessageAt time.Time
	// TTL of a temporary conversation.
	TTL time.Duration
	// Attributes holds every custom column (top-level keys that are not
	// reserved), as decoded JSON; dates stay {"__type":"Date","iso":...}.
	Attributes map[string]any
	// LastMessage is set by queries WithLastMessage.
	LastMessage *Message
	// Subscribed, SubscribedAt and SubscriptionMuted are this client's
	// subscription to a system conversation (System).
	Subscribed        bool
	SubscribedAt      time.Time
	SubscriptionMuted bool
}

// Attr returns a custom attribute by dot path ("attr.type").
func (i *ConversationInfo) Attr(path string) (any, bool) {
	var cur any = i.Attributes
	for p := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Conversation is a handle on a conversation for one IMClient. It is safe
// for concurrent use. Info returns the last known record, refreshed by Fetch
// and updated by the handle's own member and attribute operations (not by
// pushes: call Fetch after an event if the record matters).
type Conversation struct {
	cl *IMClient
	id string

	mu   sync.Mutex
	info ConversationInfo
}

// ID returns the conversation id.
func (c *Conversation) ID() string { return c.id }

// Client returns the session this handle belongs to.
func (c *Conversation) Client() *IMClient { return c.cl }

// Info returns a copy of the last known record.
func (c *Conversation) Info() ConversationInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	info := c.info
	info.Members = slices.Clone(info.Members)
	info.MutedBy = slices.Clone(info.MutedBy)
	return info
}

// Conversation returns a handle for id without asking the server; Info is
// empty until Fetch.
func (cl *IMClient) Conversation(id string) *Conversation {
	return &Conversation{cl: cl, id: id, info: ConversationInfo{ID: id, Temporary: strings.HasPrefix(id, "_tmp:")}}
}

// CreateOptions describes a new conversation (the SDK's createConversation
// options).
type CreateOptions struct {
	// Members besides the creator (the creator is always added).
	Members []string
	Name    string
	// Attributes become top-level columns of the record, like the extra
	// options of the JS SDK; time.Time values are sent as LeanCloud dates.
	Attributes map[string]any
	// Unique returns the existing conversation with the same member set
	// instead of creating one. The JS SDK defaults to true; set it.
	Unique bool
	// Transient creates a chat room.
	Transient bool
	// Temporary creates a temporary conversation living TTL (zero: the
	// server's default of one day); TTL has second granularity.
	Temporary bool
	TTL       time.Duration
}

// CreateConversation creates a conversation (conv/start). The returned
// handle's Info holds what the client knows without a fetch.
func (cl *IMClient) CreateConversation(ctx context.Context, o CreateOptions) (*Conversation, error) {
	members := normalizeMembers(append(slices.Clone(o.Members), cl.id))
	attrs := make(map[string]any, len(o.Attributes)+1)
	maps.Copy(attrs, o.Attributes)
	if o.Name != "" {
		attrs["name"] = o.Name
	}
	data, err := marshalJSON(attrs)
	if err != nil {
		return nil, err
	}
	cm := &pb.ConvCommand{M: members, Attr: protocol.JSON(data), Unique: new(o.Unique)}
	if o.Transient {
		cm.Transient = new(true)
		cm.TempConv = new(false)
		cm.M = []string{cl.id}
	}
	if o.Temporary {
		cm.TempConv = new(true)
		if o.TTL > 0 {
			cm.TempConvTTL = new(int32(o.TTL / time.Second))
		}
	}
	if err := cl.signConv(ctx, cm, "", members, "create"); err != nil {
		return nil, err
	}
	resp, err := cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), ConvMessage: cm})
	if err != nil {
		return nil, err
	}
	rm := resp.GetConvMessage()
	if rm.GetCid() == "" {
		return nil, fmt.Errorf("%w: conv/start answered without cid", ErrUnexpectedResponse)
	}
	created := isoTime(rm.GetCdate())
	conv := cl.Conversation(rm.GetCid())
	conv.info = ConversationInfo{
		ID: rm.GetCid(), Name: o.Name, Creator: cl.id, Members: cm.M, Transient: o.Transient,
		Temporary: o.Temporary || strings.HasPrefix(rm.GetCid(), "_tmp:"), Unique: o.Unique && !o.Transient,
		UniqueID: rm.GetUniqueId(), CreatedAt: created, UpdatedAt: created, Attributes: o.Attributes,
		TTL: time.Duration(rm.GetTempConvTTL()) * time.Second,
	}
	if o.Transient {
		conv.info.Members = nil
	}
	return conv, nil
}

// CreateChatRoom creates a chat room (transient conversation).
func (cl *IMClient) CreateChatRoom(ctx context.Context, name string, attrs map[string]any) (*Conversation, error) {
	return cl.CreateConversation(ctx, CreateOptions{Name: name, Attributes: attrs, Transient: true})
}

// CreateTemporaryConversation creates a temporary conversation with the
// given members living ttl (zero: server default).
func (cl *IMClient) CreateTemporaryConversation(ctx context.Context, members []string, ttl time.Duration) (*Conversation, error) {
	return cl.CreateConversation(ctx, CreateOptions{Members: members, Temporary: true, TTL: ttl, Unique: true})
}

// GetConversation fetches a conversation by id (temporary ids included);
// ErrNotFound if it does not exist or has expired.
func (cl *IMClient) GetConversation(ctx context.Context, id string) (*Conversation, error) {
	c := cl.Conversation(id)
	if err := c.Fetch(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// GetConversations fetches several conversations by id in one query per
// kind (temporary ids through tempConvIds, the others through $in); unknown
// ids are simply missing from the result, which is in no particular order.
func (cl *IMClient) GetConversations(ctx context.Context, ids ...string) ([]*Conversation, error) {
	var normal []any
	var tempIDs []string
	for _, id := range ids {
		if strings.HasPrefix(id, "_tmp:") {
			tempIDs = append(tempIDs, id)
		} else {
			normal = append(normal, id)
		}
	}
	var out []*Conversation
	if len(normal) > 0 {
		list, err := cl.Query().ContainedIn("objectId", normal...).Limit(len(normal)).Find(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	if len(tempIDs) > 0 {
		list, err := cl.Query().TemporaryIDs(tempIDs...).Find(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

// Fetch reloads the record from the server.
func (c *Conversation) Fetch(ctx context.Context) error {
	var q *ConversationQuery
	if strings.HasPrefix(c.id, "_tmp:") {
		q = c.cl.Query().TemporaryIDs(c.id)
	} else {
		q = c.cl.Query().EqualTo("objectId", c.id).Limit(1)
	}
	infos, err := q.findInfos(ctx)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, c.id)
	}
	c.mu.Lock()
	c.info = infos[0]
	c.mu.Unlock()
	return nil
}

// MemberResult is the outcome of a member operation that may succeed
// partially: Allowed ids succeeded, each Failed entry lists ids (Pids) that
// failed with that error.
type MemberResult struct {
	Allowed []string
	Failed  []*Error
}

func memberResult(allowed []string, failed []*pb.ErrorCommand) *MemberResult {
	return &MemberResult{Allowed: allowed, Failed: errorsFromProto(failed)}
}

// Add invites members (conv/add).
func (c *Conversation) Add(ctx context.Context, ids []string) (*MemberResult, error) {
	return c.changeMembers(ctx, pb.OpType_add, ids, "invite")
}

// Remove removes members (conv/remove).
func (c *Conversation) Remove(ctx context.Context, ids []string) (*MemberResult, error) {
	return c.changeMembers(ctx, pb.OpType_remove, ids, "kick")
}

// Join adds the client itself; a partial failure is returned as its *Error.
func (c *Conversation) Join(ctx context.Context) error {
	return firstFailure(c.changeMembers(ctx, pb.OpType_add, []string{c.cl.id}, "invite"))
}

// Quit removes the client itself; a partial failure (e.g. 4324
// CONVERSATION_NEED_OWNER for the creator) is returned as its *Error.
func (c *Conversation) Quit(ctx context.Context) error {
	return firstFailure(c.changeMembers(ctx, pb.OpType_remove, []string{c.cl.id}, "kick"))
}

func firstFailure(r *MemberResult, err error) error {
	if err != nil {
		return err
	}
	if len(r.Failed) > 0 {
		return r.Failed[0]
	}
	return nil
}

func (c *Conversation) changeMembers(ctx context.Context, op pb.OpType, ids []string, action string) (*MemberResult, error) {
	cm := &pb.ConvCommand{Cid: new(c.id), M: ids}
	if err := c.cl.signConv(ctx, cm, c.id, normalizeMembers(ids), action); err != nil {
		return nil, err
	}
	resp, err := c.cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm})
	if err != nil {
		return nil, err
	}
	rm := resp.GetConvMessage()
	r := memberResult(rm.GetAllowedPids(), rm.GetFailedPids())
	c.mu.Lock()
	if op == pb.OpType_add {
		c.info.Members = normalizeMembers(append(c.info.Members, r.Allowed...))
	} else {
		c.info.Members = slices.DeleteFunc(c.info.Members, func(m string) bool { return slices.Contains(r.Allowed, m) })
	}
	if u := isoTime(rm.GetUdate()); !u.IsZero() {
		c.info.UpdatedAt = u
	}
	c.mu.Unlock()
	return r, nil
}

// Update changes attributes (conv/update). Keys are column names or dot
// paths ("attr.type"); values are JSON values, time.Time, or operations
// built with OpDelete, OpAdd, OpAddUnique, OpRemove, OpIncrement. It
// returns the resulting values of the changed keys (attrModified).
func (c *Conversation) Update(ctx context.Context, changes map[string]any) (map[string]any, error) {
	data, err := marshalJSON(changes)
	if err != nil {
		return nil, err
	}
	resp, err := c.cl.request(ctx, &pb.GenericCommand{
		Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_update.Enum(),
		ConvMessage: &pb.ConvCommand{Cid: new(c.id), Attr: protocol.JSON(data)},
	})
	if err != nil {
		return nil, err
	}
	rm := resp.GetConvMessage()
	c.mu.Lock()
	if u := isoTime(rm.GetUdate()); !u.IsZero() {
		c.info.UpdatedAt = u
	}
	if n, ok := changes["name"].(string); ok {
		c.info.Name = n
	}
	c.mu.Unlock()
	return jsonObject(rm.GetAttrModified().GetData()), nil
}

// OpDelete removes a key (LeanCloud {"__op":"Delete"}).
func OpDelete() map[string]any { return map[string]any{"__op": "Delete"} }

// OpAdd appends objects to an array.
func OpAdd(objects ...any) map[string]any { return map[string]any{"__op": "Add", "objects": objects} }

// OpAddUnique appends objects not yet in the array.
func OpAddUnique(objects ...any) map[string]any {
	return map[string]any{"__op": "AddUnique", "objects": objects}
}

// OpRemove removes objects from an array.
func OpRemove(objects ...any) map[string]any {
	return map[string]any{"__op": "Remove", "objects": objects}
}

// OpIncrement adds amount to a number.
func OpIncrement(amount float64) map[string]any {
	return map[string]any{"__op": "Increment", "amount": amount}
}

// Count returns the member count (online members for chat rooms).
func (c *Conversation) Count(ctx context.Context) (int, error) {
	resp, err := c.convRequest(ctx, pb.OpType_count, &pb.ConvCommand{})
	if err != nil {
		return 0, err
	}
	return int(resp.GetConvMessage().GetCount()), nil
}

// Mute turns offline notifications for this conversation off.
func (c *Conversation) Mute(ctx context.Context) error {
	_, err := c.convRequest(ctx, pb.OpType_mute, &pb.ConvCommand{})
	return err
}

// Unmute turns offline notifications back on.
func (c *Conversation) Unmute(ctx context.Context) error {
	_, err := c.convRequest(ctx, pb.OpType_unmute, &pb.ConvCommand{})
	return err
}

// Member roles (conv/member_info_update).
const (
	RoleOwner   = "Owner"
	RoleManager = "Manager"
	RoleMember  = "Member"
)

// UpdateMemberRole sets member's role to RoleManager or RoleMember.
func (c *Conversation) UpdateMemberRole(ctx context.Context, member, role string) error {
	if role == RoleOwner {
		return &Error{Code: 5130, Reason: "OWNER_PROMOTION_NOT_ALLOWED", Detail: "the owner role cannot be assigned"}
	}
	_, err := c.convRequest(ctx, pb.OpType_member_info_update, &pb.ConvCommand{
		TargetClientId: new(member),
		Info:           &pb.ConvMemberInfo{Pid: new(member), Role: new(role)},
	})
	return err
}

// MuteMembers silences members (conv/add_shutup).
func (c *Conversation) MuteMembers(ctx context.Context, ids []string) (*MemberResult, error) {
	resp, err := c.convRequest(ctx, pb.OpType_add_shutup, &pb.ConvCommand{M: ids})
	if err != nil {
		return nil, err
	}
	return memberResult(resp.GetConvMessage().GetAllowedPids(), resp.GetConvMessage().GetFailedPids()), nil
}

// UnmuteMembers lifts silencing (conv/remove_shutup).
func (c *Conversation) UnmuteMembers(ctx context.Context, ids []string) (*MemberResult, error) {
	resp, err := c.convRequest(ctx, pb.OpType_remove_shutup, &pb.ConvCommand{M: ids})
	if err != nil {
		return nil, err
	}
	return memberResult(resp.GetConvMessage().GetAllowedPids(), resp.GetConvMessage().GetFailedPids()), nil
}

// MutedMembers lists silenced members, one page of at most limit (zero:
// server default) from cursor next ("" for the first page). The returned
// next is "" on the last page.
func (c *Conversation) MutedMembers(ctx context.Context, limit int, next string) ([]string, string, error) {
	cm := &pb.ConvCommand{}
	if limit > 0 {
		cm.Limit = new(int32(limit))
	}
	if next != "" {
		cm.Next = new(next)
	}
	resp, err := c.convRequest(ctx, pb.OpType_query_shutup, cm)
	if err != nil {
		return nil, "", err
	}
	return resp.GetConvMessage().GetM(), resp.GetConvMessage().GetNext(), nil
}

// BlockMembers puts members on the conversation blacklist (they are removed).
func (c *Conversation) BlockMembers(ctx context.Context, ids []string) (*MemberResult, error) {
	return c.blacklist(ctx, pb.OpType_block, ids)
}

// UnblockMembers takes members off the blacklist.
func (c *Conversation) UnblockMembers(ctx context.Context, ids []string) (*MemberResult, error) {
	return c.blacklist(ctx, pb.OpType_unblock, ids)
}

func (c *Conversation) blacklist(ctx context.Context, op pb.OpType, ids []string) (*MemberResult, error) {
	resp, err := c.cl.request(ctx, &pb.GenericCommand{
		Cmd: pb.CommandType_blacklist.Enum(), Op: op.Enum(),
		BlacklistMessage: &pb.BlacklistCommand{SrcCid: new(c.id), ToPids: ids},
	})
	if err != nil {
		return nil, err
	}
	bm := resp.GetBlacklistMessage()
	return memberResult(bm.GetAllowedPids(), bm.GetFailedPids()), nil
}

// BlockedMembers lists the blacklist, paged like MutedMembers.
func (c *Conversation) BlockedMembers(ctx context.Context, limit int, next string) ([]string, string, error) {
	bm := &pb.BlacklistCommand{SrcCid: new(c.id)}
	if limit > 0 {
		bm.Limit = new(int32(limit))
	}
	if next != "" {
		bm.Next = new(next)
	}
	resp, err := c.cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_blacklist.Enum(), Op: pb.OpType_query.Enum(), BlacklistMessage: bm})
	if err != nil {
		return nil, "", err
	}
	return resp.GetBlacklistMessage().GetBlockedPids(), resp.GetBlacklistMessage().GetNext(), nil
}

// MaxRead returns how far the other member(s) have received and read this
// client's messages (conv/max_read); zero times when unknown.
func (c *Conversation) MaxRead(ctx context.Context) (delivered, read time.Time, err error) {
	resp, err := c.convRequest(ctx, pb.OpType_max_read, &pb.ConvCommand{})
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	cm := resp.GetConvMessage()
	return millis(cm.GetMaxAckTimestamp()), millis(cm.GetMaxReadTimestamp()), nil
}

func (c *Conversation) convRequest(ctx context.Context, op pb.OpType, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	cm.Cid = new(c.id)
	return c.cl.request(ctx, &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), ConvMessage: cm})
}

func (cl *IMClient) signConv(ctx context.Context, cm *pb.ConvCommand, cid string, members []string, action string) error {
	if cl.opts.ConversationSignature == nil {
		return nil
	}
	sig, err := cl.opts.ConversationSignature(ctx, cid, cl.id, members, action)
	if err != nil {
		return fmt.Errorf("client: conversation signature: %w", err)
	}
	cm.S, cm.T, cm.N = new(sig.Signature), new(sig.Timestamp), new(sig.Nonce)
	return nil
}

// normalizeMembers sorts and de-duplicates ids, like the SDK.
func normalizeMembers(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// marshalJSON encodes v with time.Time values as LeanCloud dates.
func marshalJSON(v any) (string, error) {
	b, err := json.Marshal(encodeDates(v))
	if err != nil {
		return "", fmt.Errorf("client: encode json: %w", err)
	}
	return string(b), nil
}

// encodeDates replaces time.Time (recursively in maps and slices) with
// {"__type":"Date","iso":...}.
func encodeDates(v any) any {
	switch x := v.(type) {
	case time.Time:
		return map[string]any{"__type": "Date", "iso": protocol.ISODate(x.UnixMilli())}
	case *time.Time:
		return encodeDates(*x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = encodeDates(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = encodeDates(e)
		}
		return out
	}
	return v
}

// reservedColumns are record keys mapped to ConversationInfo fields.
var reservedColumns = map[string]bool{
	"objectId": true, "name": true, "c": true, "m": true, "mu": true, "tr": true, "sys": true, "unique": true,
	"uniqueId": true, "createdAt": true, "updatedAt": true, "lm": true, "ttl": true, "temp": true, "conv_type": true,
	"msg": true, "bin": true, "msg_mid": true, "msg_from": true, "msg_timestamp": true, "patch_timestamp": true,
	"mention_all": true, "mention_pids": true, "joined": true, "joinedAt": true, "muted": true,
}

// parseConversation converts one record of conv/results.
func parseConversation(rec map[string]any) ConversationInfo {
	info := ConversationInfo{
		ID: str(rec["objectId"]), Name: str(rec["name"]), Creator: str(rec["c"]),
		Members: strs(rec["m"]), MutedBy: strs(rec["mu"]),
		Transient: boolean(rec["tr"]), System: boolean(rec["sys"]), Unique: boolean(rec["unique"]),
		UniqueID: str(rec["uniqueId"]), CreatedAt: dateValue(rec["createdAt"]), UpdatedAt: dateValue(rec["updatedAt"]),
		LastMessageAt: dateValue(rec["lm"]),
	}
	if info.System {
		info.Subscribed, info.SubscriptionMuted = boolean(rec["joined"]), boolean(rec["muted"])
		if at, ok := rec["joinedAt"].(float64); ok {
			info.SubscribedAt = millis(int64(at))
		}
	}
	if ttl, ok := rec["ttl"].(float64); ok {
		info.TTL = time.Duration(ttl) * time.Second
		info.Temporary = true
	}
	if strings.HasPrefix(info.ID, "_tmp:") {
		info.Temporary = true
	}
	for k, v := range rec {
		if !reservedColumns[k] {
			if info.Attributes == nil {
				info.Attributes = make(map[string]any)
			}
			info.Attributes[k] = v
		}
	}
	if msg := str(rec["msg"]); msg != "" {
		m := &Message{
			ID: str(rec["msg_mid"]), ConversationID: info.ID, From: str(rec["msg_from"]), Content: msg,
			MentionAll: boolean(rec["mention_all"]), MentionPids: strs(rec["mention_pids"]),
		}
		if ts, ok := rec["msg_timestamp"].(float64); ok {
			m.Timestamp = millis(int64(ts))
		}
		if ts, ok := rec["patch_timestamp"].(float64); ok {
			m.PatchedAt = millis(int64(ts))
		}
		if boolean(rec["bin"]) {
			if b, err := base64.StdEncoding.DecodeString(msg); err == nil {
				m.Binary, m.Content = b, ""
			}
		}
		info.LastMessage = m
	}
	return info
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func boolean(v any) bool {
	b, _ := v.(bool)
	return b
}

func strs(v any) []string {
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// dateValue reads an ISO string, a LeanCloud date object or a number (ms).
func dateValue(v any) time.Time {
	switch x := v.(type) {
	case string:
		return isoTime(x)
	case float64:
		return millis(int64(x))
	case map[string]any:
		return isoTime(str(x["iso"]))
	}
	return time.Time{}
}
