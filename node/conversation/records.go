package conversation

import (
	"crypto/md5" //nolint:gosec // uniqueId format only
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/store"
)

// Conversation kinds (convType on the wire).
const (
	convNormal    = 1
	convTransient = 2
	convSystem    = 3
	convTemporary = 4
)

// tempPrefix starts every temporary conversation id (SDKs recognise them by it).
const tempPrefix = "_tmp:"

// Roles of _ConversationMemberInfo.
const (
	roleOwner   = "Owner"
	roleManager = "Manager"
	roleMember  = "Member"
)

// Conversation attribute limits. LeanCloud documents none; these keep one
// record small enough that a page of query results and one replicated
// write stay far below their frame limits (a record is at most ~32 KiB of
// attributes plus 500 member ids of 64 bytes).
const (
	// MaxAttributesSize bounds a conversation's custom attributes (every
	// column, name included) as JSON.
	MaxAttributesSize = 32 << 10
	// MaxAttributes bounds the number of custom attributes.
	MaxAttributes = 256
)

// checkColumns refuses custom attributes over the limits, before anything
// is written (error 4306 naming the limit).
func checkColumns(cols map[string]any) error {
	if len(cols) > MaxAttributes {
		return protocol.ErrConversationUpdateFailed.WithDetail("%d attributes exceed the limit of %d", len(cols), MaxAttributes)
	}
	b, err := json.Marshal(cols)
	if err != nil {
		return protocol.ErrConversationUpdateFailed.WithDetail("attributes are not JSON: %v", err)
	}
	if len(b) > MaxAttributesSize {
		return protocol.ErrConversationUpdateFailed.WithDetail("attributes of %d bytes (as JSON) exceed the limit of %d bytes",
			len(b), MaxAttributesSize)
	}
	return nil
}

// convRecord is a conversation (value of FamConv, a field doc: see
// fields.go; the JSON tags decode records stored before). Columns holds the
// custom columns (including name) exactly as JSON values.
type convRecord struct {
	ID        string            `json:"id"`
	Creator   string            `json:"c,omitempty"`
	Members   []string          `json:"m,omitempty"` // sorted
	Muted     []string          `json:"mu,omitempty"`
	Kind      int               `json:"k"`
	Unique    bool              `json:"u,omitempty"`
	UniqueID  string            `json:"uid,omitempty"`
	Created   int64             `json:"ca"`
	Updated   int64             `json:"ua"`
	TTL       int32             `json:"ttl,omitempty"` // seconds, temporary only
	Expire    int64             `json:"exp,omitempty"` // ms, temporary only
	Columns   map[string]any    `json:"cols,omitempty"`
	LastPatch int64             `json:"lpt,omitempty"` // last assigned patch timestamp
	Silenced  []string          `json:"sh,omitempty"`  // sorted
	Blocked   []string          `json:"bl,omitempty"`  // sorted
	Roles     map[string]string `json:"roles,omitempty"`
	// TempSilenced maps a temporarily silenced client to the end of its
	// silence (ms); expired entries are dropped at the next change.
	TempSilenced map[string]int64 `json:"tsh,omitempty"`

	// stored is the fields value the record was loaded from (nil for a
	// new record, or one stored as JSON): putConv writes only the fields
	// that differ from it (see fields.go).
	stored []byte
	// orderIndexed is set for a record decoded from the store (or written
	// once), indexedUpdated to its updatedAt there: putConv moves the
	// order index entry from it (order.go).
	orderIndexed   bool
	indexedUpdated int64
}

// message is a stored message (value of FamMsg).
type message struct {
	ID          string   `json:"id"`
	From        string   `json:"f"`
	Ts          int64    `json:"t"`
	Data        string   `json:"d,omitempty"`
	Bin         []byte   `json:"b,omitempty"`
	IsBin       bool     `json:"ib,omitempty"`
	Receipt     bool     `json:"r,omitempty"`
	GroupRcp    bool     `json:"gr,omitempty"` // sender wants read receipts in groups (configBitmap bit 6)
	MentionAll  bool     `json:"ma,omitempty"`
	MentionPids []string `json:"mp,omitempty"`
	HasType     bool     `json:"ht,omitempty"`
	Type        int64    `json:"ty,omitempty"`
	PatchTs     int64    `json:"pt,omitempty"`
	// To restricts a system conversation's message to chosen clients
	// (empty: every subscriber). See sysconv.go.
	To []string `json:"to,omitempty"`

	// prevStored is the timestamp of the conversation's stored message
	// before this one (0: none) when a send assigned Ts, and indexed
	// whether the conversation keeps an order index entry: the send moves
	// the entry (indexLastMessage). Not stored.
	prevStored int64
	indexed    bool
}

func (m *message) mentions(clientID string) bool {
	return m.MentionAll || slices.Contains(m.MentionPids, clientID)
}

// clientState is per (client, conversation) state (value of FamClientState,
// a field doc like convRecord).
type clientState struct {
	ReadTs  int64 `json:"rt,omitempty"` // read pointer: messages with ts <= ReadTs are read
	ReadAt  int64 `json:"ra,omitempty"` // when the pointer last moved
	AckTs   int64 `json:"at,omitempty"` // delivery pointer
	AckAt   int64 `json:"aa,omitempty"`
	Changed int64 `json:"ch,omitempty"` // last change of the unread state (ms)

	// stored is the fields value the state was loaded from (nil: not
	// loaded): putClientState writes only the fields that differ.
	stored []byte
	// base, when hasBase is set, holds the values as stored (a state the
	// engine kept, states.go), in clientStateFields order: putClientState
	// compares with it instead of stored.
	base    [5]int64
	hasBase bool
}

func (r *convRecord) isMember(id string) bool {
	_, ok := slices.BinarySearch(r.Members, id)
	return ok
}

func (r *convRecord) isSilenced(id string) bool {
	_, ok := slices.BinarySearch(r.Silenced, id)
	return ok
}

func (r *convRecord) isMutedBy(id string) bool {
	_, ok := slices.BinarySearch(r.Muted, id)
	return ok
}

func (r *convRecord) isBlocked(id string) bool {
	_, ok := slices.BinarySearch(r.Blocked, id)
	return ok
}

func (r *convRecord) role(id string) string {
	if id == r.Creator {
		return roleOwner
	}
	if role, ok := r.Roles[id]; ok {
		return role
	}
	return roleMember
}

// canModerate reports whether id may silence, block or change roles.
func (r *convRecord) canModerate(id string) bool {
	role := r.role(id)
	return role == roleOwner || role == roleManager
}

func (r *convRecord) expired(nowMs int64) bool {
	return r.Kind == convTemporary && r.Expire > 0 && nowMs >= r.Expire
}

// sortedSet returns ids de-duplicated and sorted, without empty ids.
func sortedSet(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func setAdd(set []string, ids ...string) []string {
	for _, id := range ids {
		if i, ok := slices.BinarySearch(set, id); !ok {
			set = slices.Insert(set, i, id)
		}
	}
	return set
}

func setRemove(set []string, ids ...string) []string {
	for _, id := range ids {
		if i, ok := slices.BinarySearch(set, id); ok {
			set = slices.Delete(set, i, i+1)
		}
	}
	return set
}

// uniqueKey is the 32-hex unique-conversation key of a member set.
func uniqueKey(members []string) string {
	sum := md5.Sum([]byte(strings.Join(members, ":"))) //nolint:gosec // LeanCloud's uniqueId format, not a security hash
	return hex.EncodeToString(sum[:])
}

// newConvID returns a 24-hex MongoDB-ObjectId-style id: 4 bytes of seconds,
// 8 random bytes.
func newConvID(nowMs int64) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(nowMs/1000))
	_, _ = rand.Read(b[4:])
	return hex.EncodeToString(b[:])
}

// newConvIDIn returns prefix+newConvID(nowMs) for an id whose conversation
// lives in shard: a unique conversation is created in the shard of its
// unique key, so conv/start, which runs at that shard's coordinator, writes
// the record and the key in one local batch. A shard is hit after
// Shards.Count tries on average; the bound only guards against a Shards
// that never places an id there (the last id is used then, and the unique
// key's write goes through the outbox).
func (e *Engine) newConvIDIn(app string, shard uint16, prefix string, nowMs int64) string {
	id := prefix + newConvID(nowMs)
	for range 64 * max(e.shards.Count(), 1) {
		if e.shards.ConvShard(app, id) == shard {
			return id
		}
		id = prefix + newConvID(nowMs)
	}
	return id
}

// newMessageID returns a 22-character URL-safe Base64 id of 16 bytes: ts,
// the message's timestamp (ms), 8 bytes big-endian, and 8 random bytes. A
// message whose id carries exactly its stored timestamp needs no FamMsgID
// entry: lookupMessage reads its key directly (msgIDTs). Clients treat the
// id as opaque.
func newMessageID(ts int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ts))
	_, _ = rand.Read(b[8:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// msgIDLen is the length of an id of newMessageID.
const msgIDLen = 22

// msgIDTs returns the timestamp an id of newMessageID carries. Any other
// 22-character URL-safe Base64 string decodes too, to a timestamp that
// means nothing (ids of earlier builds were 16 random bytes; imported ids
// are anything): a caller uses it only as a guess that the message key
// confirms, and ok is false only when mid cannot be such an id at all.
func msgIDTs(mid string) (ts int64, ok bool) {
	if len(mid) != msgIDLen {
		return 0, false
	}
	var b [16]byte
	if n, err := base64.RawURLEncoding.Decode(b[:], []byte(mid)); err != nil || n != len(b) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[:8])), true
}

// needsIDIndex reports whether message m needs a FamMsgID entry: its id
// does not carry exactly its timestamp (an id of an earlier build, an
// imported id, a will message's id given before its timestamp).
func (m *message) needsIDIndex() bool {
	ts, ok := msgIDTs(m.ID)
	return !ok || ts != m.Ts
}

// randomNonce returns 8 random URL-safe Base64 characters.
func randomNonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Keys. Conversation data lives in the conversation's shard, per-client data
// in the client's shard.

func (e *Engine) convKey(app, cid string, fam store.Family) store.Key {
	return store.NewKey(e.shards.ConvShard(app, cid), app, fam).Str(cid)
}

func (e *Engine) clientKey(app, clientID string, fam store.Family) store.Key {
	return store.NewKey(e.shards.ClientShard(app, clientID), app, fam).Str(clientID)
}

func (e *Engine) uniqueIndexKey(app, uniqueID string) []byte {
	return store.NewKey(e.shards.ConvShard(app, uniqueID), app, store.FamUnique).Str(uniqueID).Bytes()
}

func (e *Engine) msgKey(app, cid string, ts int64, mid string) []byte {
	return e.convKey(app, cid, store.FamMsg).Int64(ts).Str(mid).Bytes()
}

// loadConv returns the conversation or nil if it does not exist.
func (e *Engine) loadConv(app, cid string) (*convRecord, error) {
	if cid == "" {
		return nil, nil
	}
	v, err := e.st.Get(e.convKey(app, cid, store.FamConv).Bytes())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load conversation", err)
	}
	r, err := convFromValue(v) // v: a copy Get made for us
	if err != nil {
		return nil, internal("decode conversation "+cid, err)
	}
	return r, nil
}

// convFromValue decodes a stored conversation record, keeping v as the
// fields value it was loaded from when it is one (not legacy JSON); v must
// not change afterwards.
func convFromValue(v []byte) (*convRecord, error) {
	r, err := decodeConv(v)
	if err != nil {
		return nil, err
	}
	if v[0] != '{' {
		r.stored = v
	}
	return r, nil
}

// loadConvShared is loadConv for a caller that only reads the record: it
// may be the one decoded copy the store's read cache keeps for every such
// caller (store.SharedGetter), so nothing may modify it or what it holds
// (its slices and maps); clone it first (loadConv) to change it.
func (e *Engine) loadConvShared(app, cid string) (*convRecord, error) {
	sg, ok := e.st.(store.SharedGetter)
	if !ok || cid == "" {
		return e.loadConv(app, cid)
	}
	d, err := sg.GetShared(e.convKey(app, cid, store.FamConv).Bytes(), func(v []byte) (any, error) {
		r, err := convFromValue(v)
		if err != nil {
			return nil, fmt.Errorf("decode conversation %s: %w", cid, err)
		}
		return r, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load conversation", err)
	}
	return d.(*convRecord), nil
}

// loadLive returns the conversation, answering 4303 when it is missing or an
// expired temporary conversation.
func (e *Engine) loadLive(app, cid string) (*convRecord, error) {
	r, err := e.loadConv(app, cid)
	if err != nil {
		return nil, err
	}
	if r == nil || r.expired(e.nowMs()) {
		return nil, protocol.ErrConversationNotFound.WithDetail("conversation %q not found", cid)
	}
	return r, nil
}

// putConv writes the fields of r that changed since it was loaded (every
// field of a new record) and deletes the fields it no longer has, with the
// order index entries that change with them.
func (e *Engine) putConv(b *store.Batch, app string, r *convRecord) {
	b.MergeFields(e.convKey(app, r.ID, store.FamConv).Bytes(), changedFields(r.stored, r.fields(), isConvField))
	e.indexConvOrder(b, app, r)
}

func (e *Engine) loadClientState(app, clientID, cid string) (clientState, error) {
	var s clientState
	v, err := e.st.Get(e.clientKey(app, clientID, store.FamClientState).Str(cid).Bytes())
	if errors.Is(err, store.ErrNotFound) {
		return s, nil
	}
	if err != nil {
		return s, internal("load client state", err)
	}
	if s, err = decodeClientState(v); err != nil {
		return s, internal("decode client state", err)
	}
	if v[0] != '{' {
		s.stored = v
	}
	return s, nil
}

// putClientState writes the fields of s that changed since it was loaded.
// A state not loaded replaces any stored one: its zero fields are deleted.
func (e *Engine) putClientState(b *store.Batch, app, clientID, cid string, s clientState) {
	if s.hasBase {
		b.MergeFields(e.clientKey(app, clientID, store.FamClientState).Str(cid).Bytes(), s.changedSinceBase())
		return
	}
	fields := s.fields()
	if s.stored == nil {
		for _, name := range clientStateFields {
			if !slices.ContainsFunc(fields, func(f store.Field) bool { return f.Name == name }) {
				fields = append(fields, store.Field{Name: name, Deleted: true})
			}
		}
	} else {
		fields = changedFields(s.stored, fields, isClientStateField)
	}
	b.MergeFields(e.clientKey(app, clientID, store.FamClientState).Str(cid).Bytes(), fields)
}

// indexClient adds cid to the client's conversation index (FamClientConv)
// and starts its read pointer at readTs (the conversation's newest message),
// so history from before the join does not count as unread.
func (e *Engine) indexClient(b *store.Batch, app, clientID string, r *convRecord, readTs, nowMs int64) {
	b.Set(e.clientKey(app, clientID, store.FamClientConv).Str(r.ID).Bytes(), nil)
	e.putClientState(b, app, clientID, r.ID, clientState{ReadTs: readTs, Changed: nowMs})
}

// newestMessage returns the conversation's newest stored message (the last
// message of queries and unread tuples, and lm), or nil.
func (e *Engine) newestMessage(app, cid string) (*message, error) {
	var m *message
	err := e.st.ScanPrefix(e.convKey(app, cid, store.FamMsg).Bytes(), true, func(_, v []byte) (bool, error) {
		var err error
		m, err = decodeMessage(v)
		return false, err
	})
	if err != nil {
		return nil, internal("load newest message", err)
	}
	return m, nil
}

func (m *message) ts() int64 {
	if m == nil {
		return 0
	}
	return m.Ts
}

func (e *Engine) unindexClient(b *store.Batch, app, clientID, cid string) {
	b.Delete(e.clientKey(app, clientID, store.FamClientConv).Str(cid).Bytes())
	b.Delete(e.clientKey(app, clientID, store.FamClientState).Str(cid).Bytes())
}

// clientConvs lists the ids of the conversations in the client's index.
func (e *Engine) clientConvs(app, clientID string) ([]string, error) {
	prefix := e.clientKey(app, clientID, store.FamClientConv).Bytes()
	var out []string
	err := e.st.ScanPrefix(prefix, false, func(k, _ []byte) (bool, error) {
		r, _, _, _ := store.ReadKey(k)
		_ = r.Str()
		cid := r.Str()
		if err := r.Err(); err != nil {
			return false, err
		}
		out = append(out, cid)
		return true, nil
	})
	if err != nil {
		return nil, internal("scan client index", err)
	}
	return out, nil
}

func (e *Engine) loadMessage(app, cid string, ts int64, mid string) (*message, error) {
	v, err := e.st.Get(e.msgKey(app, cid, ts, mid))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load message", err)
	}
	return decodeMessage(v)
}

// lookupMessage finds a message by id: at the timestamp its id carries
// (msgIDTs), and failing that through FamMsgID, which holds every message
// whose id does not carry exactly its timestamp (needsIDIndex), including
// every message stored by a build before ids carried one.
func (e *Engine) lookupMessage(app, cid, mid string) (*message, error) {
	if ts, ok := msgIDTs(mid); ok {
		m, err := e.loadMessage(app, cid, ts, mid)
		if m != nil || err != nil {
			return m, err
		}
	}
	v, err := e.st.Get(e.convKey(app, cid, store.FamMsgID).Str(mid).Bytes())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("load message index", err)
	}
	if len(v) != 8 {
		return nil, internal("decode message index", errors.New("bad length"))
	}
	return e.loadMessage(app, cid, int64(binary.BigEndian.Uint64(v)), mid)
}

// putMessage writes m to b, with its FamMsgID entry when it needs one
// (needsIDIndex), noting it first in e.recent (so it is noted before it can
// be committed).
func (e *Engine) putMessage(b *store.Batch, app, cid string, m *message) {
	e.recent.note(roomKey(app, cid), e.tsEpoch.Load(), m)
	v, _ := json.Marshal(m)
	b.SetOwned(e.msgKey(app, cid, m.Ts, m.ID), v) // both built for this write
	if m.needsIDIndex() {
		b.SetOwned(e.convKey(app, cid, store.FamMsgID).Str(m.ID).Bytes(), binary.BigEndian.AppendUint64(nil, uint64(m.Ts)))
	}
}

// deleteMessageIDIndex deletes the FamMsgID entry of the message with id
// and timestamp ts, if it can have one (needsIDIndex): a message whose id
// carries its timestamp never had one, and deleting it would only write a
// tombstone.
func (e *Engine) deleteMessageIDIndex(b *store.Batch, app, cid, id string, ts int64) {
	m := message{ID: id, Ts: ts}
	if m.needsIDIndex() {
		b.Delete(e.convKey(app, cid, store.FamMsgID).Str(id).Bytes())
	}
}

func int32p(v int32) *int32    { return proto.Int32(v) }
func int64p(v int64) *int64    { return proto.Int64(v) }
func strp(v string) *string    { return proto.String(v) }
func boolp(v bool) *bool       { return proto.Bool(v) }
func isoDate(ms int64) *string { return proto.String(protocol.ISODate(ms)) }
