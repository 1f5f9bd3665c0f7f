package conversation

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/store"
)

// BackendCaller is the caller of the app's back end (the server REST API,
// authenticated with the master key) acting as clientID: the sender of its
// sends, the initiator of its membership changes (empty: nobody). It is
// the one way to make a back-end caller; Server recognises one. The
// system-conversation API is the back end too (SystemCaller).
func BackendCaller(app, clientID string) Caller { return Caller{App: app, ClientID: clientID} }

// Server reports whether the call comes from the app's back end
// (BackendCaller, SystemCaller) rather than from a client's session: such
// a caller has no session (Session 0, which crosses the peer transport
// with the command) and acts with the rights LeanCloud gives the master
// key: it reads any conversation's history, lists every conversation,
// manages members, roles and moderation lists and sends as any client
// without being a member. Gateway sessions always have a non-zero id.
func (c Caller) Server() bool { return c.Session == 0 }

// maxServerLogsLimit is the history page size of the server API (LeanCloud
// documents limit <= 1000 there; the WebSocket keeps 100).
const maxServerLogsLimit = 1000

// Server API limits.
const (
	// MaxImportMessages bounds the messages of one ImportMessages call.
	MaxImportMessages = 1000
	// maxImportColumns bounds the custom columns of an imported record.
	maxImportColumns = 100
	// maxImportBlocked bounds an imported blacklist (LeanCloud: 10 000).
	maxImportBlocked = 10000
)

// UnreadCount returns the number of messages from others after clientID's
// read pointer in cid (at most 100, as in the login unread summary): 0 for
// a client that is not a member. Safe for concurrent use.
func (e *Engine) UnreadCount(_ context.Context, app, clientID, cid string) (int, error) {
	r, err := e.loadLive(app, cid)
	if err != nil {
		return 0, err
	}
	if !e.isReader(app, r, clientID) {
		return 0, nil
	}
	s, err := e.loadClientState(app, clientID, cid)
	if err != nil {
		return 0, err
	}
	n, _, err := e.unreadCount(app, clientID, cid, s.ReadTs)
	return n, err
}

// MaxUnreadTotalConvs bounds the conversations UnreadTotal looks at.
const MaxUnreadTotalConvs = 500

// ErrTooManyConversations answers UnreadTotal for a client in more than
// MaxUnreadTotalConvs conversations.
var ErrTooManyConversations = protocol.ErrConversationQueryFailed.WithDetail("the client is in more than %d conversations: ask per conversation", MaxUnreadTotalConvs)

// UnreadTotal returns the sum of clientID's unread counts over its
// conversations (each at most 100, as UnreadCount). Safe for concurrent use.
func (e *Engine) UnreadTotal(ctx context.Context, app, clientID string) (int, error) {
	cids, err := e.clientConvs(app, clientID)
	if err != nil {
		return 0, err
	}
	if len(cids) > MaxUnreadTotalConvs {
		return 0, ErrTooManyConversations
	}
	total := 0
	for _, cid := range cids {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := e.UnreadCount(ctx, app, clientID, cid)
		if errors.Is(err, protocol.ErrConversationNotFound) {
			continue // expired or gone since it was indexed
		}
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// DeleteMessage deletes the stored copy of message mid sent at ts in cid
// (LeanCloud's DELETE .../messages/{mid}): clients keep their cached copy
// and get no push. An unknown message yields 4404. It runs under the
// conversation's stripe lock, like a patch of the message, so a delete and
// an edit racing each other apply one after the other and a deleted
// message stays deleted.
func (e *Engine) DeleteMessage(_ context.Context, app, cid, mid string, ts int64) error {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	if _, err := e.loadLive(app, cid); err != nil {
		return err
	}
	m, err := e.lookupMessage(app, cid, mid)
	if err != nil {
		return err
	}
	if m == nil || (ts != 0 && m.Ts != ts) {
		return protocol.ErrMessageNotFound.WithDetail("message %q at %d not found in %q", mid, ts, cid)
	}
	b := e.st.NewBatch()
	b.Delete(e.msgKey(app, cid, m.Ts, m.ID))
	e.deleteMessageIDIndex(b, app, cid, m.ID, m.Ts)
	if err := e.commitConv(st, app, cid, b); err != nil {
		return internal("commit message delete", err)
	}
	return nil
}

// ImportedConversation is a conversation record as LeanCloud exports it
// (the _Conversation class), already decoded: times in milliseconds.
type ImportedConversation struct {
	ID       string
	Name     *string
	Creator  string
	Members  []string
	Muted    []string
	Room     bool // tr
	System   bool // sys
	Unique   bool
	UniqueID string
	Created  int64
	Updated  int64
	// Columns are the custom columns (top-level custom keys and attr as
	// one column named attr, as the SDKs wrote them).
	Columns map[string]any
	// Roles, Silenced and Blocked are the moderation state the source
	// reports (member-infos, permanent-silenceds, blacklists).
	Roles    map[string]string
	Silenced []string
	Blocked  []string
}

// ImportConversation writes a conversation with its original id, members
// and times, without pushes or notifications. It is idempotent: an
// existing conversation with that id is left unchanged and reported false.
// Members' read pointers start at 0; SetUnread moves them once the history
// is imported.
func (e *Engine) ImportConversation(_ context.Context, app string, in ImportedConversation) (bool, error) {
	st := e.convStripe(app, in.ID)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	return e.importConvLocked(st, app, in)
}

// importConvLocked is ImportConversation once a stripe serializing the new
// record's creation, st, is held.
func (e *Engine) importConvLocked(st *stripe, app string, in ImportedConversation) (bool, error) {
	if err := validImportID(in.ID); err != nil {
		return false, err
	}
	if len(in.Members) > e.cfg.MaxMembers {
		return false, protocol.ErrConversationFull.WithDetail("at most %d members", e.cfg.MaxMembers)
	}
	if len(in.Roles) > e.cfg.MaxMembers || len(in.Silenced) > e.cfg.MaxMembers || len(in.Blocked) > maxImportBlocked {
		return false, protocol.ErrBlacklistFull.WithDetail("at most %d roles and silenced members, %d blacklisted", e.cfg.MaxMembers, maxImportBlocked)
	}
	if len(in.Columns) > maxImportColumns {
		return false, protocol.ErrConversationUpdateFailed.WithDetail("at most %d custom columns", maxImportColumns)
	}
	existing, err := e.loadConv(app, in.ID)
	if err != nil {
		return false, err
	}
	if existing != nil {
		return false, nil
	}
	cols := map[string]any{}
	for k, v := range in.Columns {
		if !reservedColumns[k] {
			cols[k] = v
		}
	}
	if in.Name != nil {
		cols["name"] = *in.Name
	}
	r := &convRecord{ID: in.ID, Creator: in.Creator, Kind: convNormal, Created: in.Created, Updated: max(in.Updated, in.Created),
		Columns: maps.Clone(cols)}
	switch {
	case in.Room:
		r.Kind = convTransient
	case in.System:
		r.Kind = convSystem
	default:
		r.Members = sortedSet(in.Members)
		r.Muted = sortedSet(in.Muted)
		for id, role := range in.Roles {
			if role != roleManager && role != roleMember {
				return false, protocol.ErrUnknownConversationRole.WithDetail("role %q of %q", role, id)
			}
			if r.isMember(id) && id != r.Creator {
				if r.Roles == nil {
					r.Roles = map[string]string{}
				}
				r.Roles[id] = role
			}
		}
		for _, id := range in.Silenced {
			if r.isMember(id) {
				r.Silenced = setAdd(r.Silenced, id)
			}
		}
		r.Blocked = sortedSet(in.Blocked)
	}
	b := e.st.NewBatch()
	if r.Kind == convNormal && in.Unique {
		r.Unique, r.UniqueID = true, in.UniqueID
		if r.UniqueID == "" {
			r.UniqueID = uniqueKey(r.Members)
		}
		b.Set(e.uniqueIndexKey(app, r.UniqueID), []byte(r.ID))
	}
	e.putConv(b, app, r)
	for _, id := range r.Members {
		e.indexClient(b, app, id, r, 0, r.Created)
	}
	if err := e.commitConv(st, app, r.ID, b); err != nil {
		return false, internal("commit imported conversation", err)
	}
	return true, nil
}

// ImportedMessage is a message record of LeanCloud's REST history.
type ImportedMessage struct {
	ID          string
	From        string
	Ts          int64
	Data        string
	Bin         []byte // set for binary messages (Data is then ignored)
	MentionAll  bool
	MentionPids []string
	PatchTs     int64
}

// ImportMessages stores messages of cid with their original ids, senders
// and timestamps, without pushes, hooks or unread changes, and returns how
// many were new. It is idempotent: a message whose id is already stored is
// skipped. The conversation must exist (import it first).
func (e *Engine) ImportMessages(_ context.Context, app, cid string, msgs []ImportedMessage) (int, error) {
	if len(msgs) > MaxImportMessages {
		return 0, protocol.ErrFrameTooLong.WithDetail("at most %d messages per call", MaxImportMessages)
	}
	r, err := e.loadLive(app, cid)
	if err != nil {
		return 0, err
	}
	for i, in := range msgs {
		switch {
		case in.ID == "" || len(in.ID) > 64:
			return 0, protocol.ErrInvalidMessagingTarget.WithDetail("message %d: msg-id must be 1-64 characters", i)
		case in.Ts <= 0:
			return 0, protocol.ErrInvalidMessagingTarget.WithDetail("message %d: timestamp must be positive milliseconds", i)
		case in.From == "" || len(in.From) > 64:
			return 0, protocol.ErrInvalidMessagingTarget.WithDetail("message %d: from must be 1-64 characters", i)
		case len(in.Data)+len(in.Bin) > protocol.MaxContentSize:
			return 0, protocol.ErrFrameTooLong.WithDetail("message %d: content exceeds %d bytes", i, protocol.MaxContentSize)
		}
	}
	b := e.st.NewBatch()
	added, newest := 0, int64(0)
	seen := map[string]bool{}
	for _, in := range msgs {
		if seen[in.ID] {
			continue
		}
		seen[in.ID] = true
		old, err := e.lookupMessage(app, cid, in.ID)
		if err != nil {
			return 0, err
		}
		if old != nil {
			continue
		}
		m := &message{ID: in.ID, From: in.From, Ts: in.Ts, MentionAll: in.MentionAll, MentionPids: in.MentionPids, PatchTs: in.PatchTs}
		if in.Bin != nil {
			m.Bin, m.IsBin = in.Bin, true
		} else {
			m.Data = in.Data
			m.Type, m.HasType = lcType(m.Data)
		}
		e.putMessage(b, app, cid, m)
		added++
		newest = max(newest, m.Ts)
	}
	if added == 0 {
		return 0, nil
	}
	if indexed(r) {
		// An lm entry at least as new as the imported messages; the
		// sweeper drops the one it makes stale.
		b.Delete(e.orderKey(app, cid, orderLM, 0))
		b.Set(e.orderKey(app, cid, orderLM, newest), nil)
	}
	if err := e.st.Commit(b); err != nil {
		return 0, internal("commit imported messages", err)
	}
	return added, nil
}

// SetUnread moves each member's read pointer of cid so that its unread
// count is unread[member] (members not named get 0: everything read), as
// the source reported it; counts above 100 are capped like the unread
// summary. Used once after a conversation's history is imported.
func (e *Engine) SetUnread(_ context.Context, app, cid string, unread map[string]int) error {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(app, cid)
	if err != nil {
		return err
	}
	for id := range unread {
		if !r.isMember(id) {
			return protocol.ErrMembershipRequired.WithDetail("%q is not a member of %q", id, cid)
		}
	}
	b := e.st.NewBatch()
	now := e.nowMs()
	for _, id := range r.Members {
		readTs, err := e.readPointerFor(app, cid, id, min(max(unread[id], 0), maxUnreadCount))
		if err != nil {
			return err
		}
		s, err := e.loadClientState(app, id, cid)
		if err != nil {
			return err
		}
		s.ReadTs, s.Changed = readTs, now
		e.putClientState(b, app, id, cid, s)
	}
	if err := e.commitConv(st, app, cid, b); err != nil {
		return internal("commit read pointers", err)
	}
	return nil
}

// readPointerFor returns the read pointer that leaves exactly n messages
// from others than clientID unread: the timestamp of the (n+1)-th newest
// such message, or 0 when there are fewer.
func (e *Engine) readPointerFor(app, cid, clientID string, n int) (int64, error) {
	var readTs int64
	seen, scanned := 0, 0
	found := false
	err := e.st.ScanPrefix(e.convKey(app, cid, store.FamMsg).Bytes(), true, func(_ []byte, v []byte) (bool, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return false, err
		}
		scanned++
		if n == 0 {
			readTs, found = m.Ts, true
			return false, nil
		}
		if m.From != clientID {
			if seen == n {
				readTs, found = m.Ts, true
				return false, nil
			}
			seen++
		}
		return scanned < maxUnreadScan, nil
	})
	if err != nil {
		return 0, internal("scan history for read pointer", err)
	}
	if !found {
		return 0, nil
	}
	return readTs, nil
}

// validImportID checks an imported conversation id: LeanCloud's are 24
// hex characters; anything printable up to 64 characters is accepted.
func validImportID(id string) error {
	if id == "" || len(id) > 64 || strings.HasPrefix(id, tempPrefix) || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return protocol.ErrInvalidMessagingTarget.WithDetail("objectId must be 1-64 printable characters, not a temporary id")
	}
	return nil
}

// CreateConversation creates a normal conversation for the server API
// without a creator (LeanCloud's POST /rtm/conversations without "c"):
// no member is its owner, and members get no join push. With Unique, the
// live conversation with the same member set is returned instead of a new
// one. It returns the conversation's id.
func (e *Engine) CreateConversation(_ context.Context, app string, in ImportedConversation) (string, error) {
	return e.createConversation(app, e.newConversation(app, in))
}

// newConversation completes in as a new conversation of the server API:
// a fresh id (in the shard of its unique key when unique), created now,
// members sorted.
func (e *Engine) newConversation(app string, in ImportedConversation) ImportedConversation {
	now := e.nowMs()
	in.Created, in.Updated, in.Room, in.System = now, now, false, false
	in.Members = sortedSet(in.Members)
	in.ID = newConvID(now)
	if in.Unique {
		in.UniqueID = uniqueKey(in.Members)
		in.ID = e.newConvIDIn(app, e.shards.ConvShard(app, in.UniqueID), "", now)
	}
	return in
}

// createConversation is CreateConversation of in, completed by
// newConversation.
func (e *Engine) createConversation(app string, in ImportedConversation) (string, error) {
	if in.Unique {
		st := e.convStripe(app, "unique:"+in.UniqueID)
		st.mu.Lock()
		defer e.unlockAndDrain(st)
		existing, err := e.uniqueConv(app, in.UniqueID)
		if err != nil {
			return "", err
		}
		if existing != nil && slices.Equal(existing.Members, in.Members) {
			return existing.ID, nil
		}
		_, err = e.importConvLocked(st, app, in)
		return in.ID, err
	}
	st := e.convStripe(app, in.ID)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	if _, err := e.importConvLocked(st, app, in); err != nil {
		return "", err
	}
	return in.ID, nil
}

// MaxTempSilence is the longest temporary silence (LeanCloud: 24 h).
const MaxTempSilence = 24 * time.Hour

// maxTempSilenced bounds a conversation's temporary silences.
const maxTempSilenced = 500

// TempSilence silences clientID in cid for ttl (sends fail with 4315
// CONVERSATION_BLACKLISTED until then), or lifts the silence when ttl is 0
// (LeanCloud's .../temporary-silenceds). Expired silences are dropped on
// the way. No push is sent, as on LeanCloud.
func (e *Engine) TempSilence(_ context.Context, app, cid, clientID string, ttl time.Duration) error {
	if ttl < 0 || ttl > MaxTempSilence {
		return protocol.ErrConversationUpdateFailed.WithDetail("ttl must be 1-%d seconds", int(MaxTempSilence.Seconds()))
	}
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(app, cid)
	if err != nil {
		return err
	}
	if r.Kind != convNormal {
		return protocol.ErrNormalConversationRequired
	}
	now := e.nowMs()
	for id, until := range r.TempSilenced {
		if until <= now {
			delete(r.TempSilenced, id)
		}
	}
	if ttl == 0 {
		delete(r.TempSilenced, clientID)
	} else {
		if _, ok := r.TempSilenced[clientID]; !ok && len(r.TempSilenced) >= maxTempSilenced {
			return protocol.ErrSilencedMemberListFull.WithDetail("at most %d temporarily silenced clients", maxTempSilenced)
		}
		if r.TempSilenced == nil {
			r.TempSilenced = map[string]int64{}
		}
		r.TempSilenced[clientID] = now + ttl.Milliseconds()
	}
	b := e.st.NewBatch()
	e.putConv(b, app, r)
	if err := e.commitConv(st, app, cid, b); err != nil {
		return internal("commit temporary silence", err)
	}
	return nil
}

// DeleteConversation deletes a normal conversation or chat room (LeanCloud's
// DELETE /rtm/conversations/{id}): its record, its members' index entries
// and its unique-members index entry, without pushes. Its messages become
// unreachable and go with the retention period. System conversations are
// deleted through their own API (4314 here).
func (e *Engine) DeleteConversation(_ context.Context, app, cid string) error {
	st := e.convStripe(app, cid)
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(app, cid)
	if err != nil {
		return err
	}
	if r.Kind == convSystem {
		return protocol.ErrNormalConversationRequired.WithDetail("delete system conversations through service-conversations")
	}
	last, err := e.newestMessage(app, r.ID)
	if err != nil {
		return err
	}
	b := e.st.NewBatch()
	b.Delete(e.convKey(app, r.ID, store.FamConv).Bytes())
	e.unindexConvOrder(b, app, r, last)
	for _, id := range r.Members {
		e.unindexClient(b, app, id, r.ID)
	}
	if r.Unique && r.UniqueID != "" {
		if err := e.dropUniqueIndex(b, app, r.ID, e.uniqueIndexKey(app, r.UniqueID)); err != nil {
			return err
		}
	}
	if err := e.commitConv(st, app, r.ID, b); err != nil {
		return internal("commit conversation delete", err)
	}
	return nil
}
