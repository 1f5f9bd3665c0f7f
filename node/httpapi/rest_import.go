package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
)

// The import endpoints are an imcluster extension (not a LeanCloud API):
// master-key calls that take LeanCloud's export shapes verbatim, keep ids
// and times, cause no pushes, hooks or unread changes, and are idempotent.
// `imnode import` drives them (docs/migrate.md).

// maxImportConversations bounds the records of one import call.
const maxImportConversations = 1000

// exportedConversation is a _Conversation record as LeanCloud's data
// export, its storage API and this API's queries return it.
type exportedConversation struct {
	ObjectID  string          `json:"objectId"`
	Name      *string         `json:"name"`
	Creator   string          `json:"c"`
	Members   []string        `json:"m"`
	Muted     []string        `json:"mu"`
	Room      bool            `json:"tr"`
	System    bool            `json:"sys"`
	Unique    bool            `json:"unique"`
	UniqueID  string          `json:"uniqueId"`
	CreatedAt json.RawMessage `json:"createdAt"`
	UpdatedAt json.RawMessage `json:"updatedAt"`
	// Moderation state the importer fetched from the source's REST API
	// (not part of LeanCloud's export): client id -> role, and the
	// permanently silenced and blacklisted ids.
	Roles    map[string]string `json:"_memberRoles"`
	Silenced []string          `json:"_silenced"`
	Blocked  []string          `json:"_blacklist"`
}

// exportColumns are the _Conversation keys that are not custom columns.
var exportColumns = map[string]bool{
	"objectId": true, "name": true, "c": true, "m": true, "mu": true, "tr": true, "sys": true, "unique": true,
	"uniqueId": true, "createdAt": true, "updatedAt": true, "lm": true, "ACL": true, "temp": true, "ttl": true,
	"conv_type": true, "msg": true, "msg_mid": true, "msg_from": true, "msg_timestamp": true, "bin": true,
	"patch_timestamp": true, "mention_all": true, "mention_pids": true, "_memberRoles": true, "_silenced": true,
	"_blacklist": true,
}

// exportTime decodes a date as exports write it: an ISO-8601 string, a
// {"__type": "Date", "iso": ...} object, or milliseconds.
func exportTime(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, true
	}
	var iso string
	if json.Unmarshal(raw, &iso) != nil {
		var d struct {
			Iso string `json:"iso"`
		}
		if json.Unmarshal(raw, &d) != nil || d.Iso == "" {
			var ms int64
			if json.Unmarshal(raw, &ms) != nil {
				return 0, false
			}
			return ms, true
		}
		iso = d.Iso
	}
	t, err := time.Parse(time.RFC3339Nano, iso)
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// decodeRecords reads a JSON array of records, or an object holding one
// under "results" (LeanCloud's query and scan answers) or "conversations".
func decodeRecords(w http.ResponseWriter, r *http.Request) ([]json.RawMessage, bool) {
	var raw json.RawMessage
	if !decodeBodyLimit(w, r, &raw, maxImportBody) {
		return nil, false
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		var obj struct {
			Results       []json.RawMessage `json:"results"`
			Conversations []json.RawMessage `json:"conversations"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			writeError(w, http.StatusBadRequest, 107, "the body must be an array of _Conversation records or {\"results\": [...]}")
			return nil, false
		}
		list = append(obj.Results, obj.Conversations...)
	}
	if len(list) > maxImportConversations {
		writeError(w, http.StatusRequestEntityTooLarge, 107, "at most "+strconv.Itoa(maxImportConversations)+" records per call")
		return nil, false
	}
	return list, true
}

// importConversations implements POST /rtm/import/conversations: writes
// each _Conversation record with its objectId, members, creator, mutes,
// type (tr, sys), unique id, custom columns and times. Answers
// {"imported": n, "existing": n}; existing ids are left unchanged.
func (s *Server) importConversations(w http.ResponseWriter, r *http.Request, app *apps.App) {
	list, ok := decodeRecords(w, r)
	if !ok {
		return
	}
	imported, existing := 0, 0
	for i, raw := range list {
		var rec exportedConversation
		var cols map[string]any
		if json.Unmarshal(raw, &rec) != nil || json.Unmarshal(raw, &cols) != nil {
			writeError(w, http.StatusBadRequest, 107, "record "+strconv.Itoa(i)+" is not a _Conversation object")
			return
		}
		created, ok1 := exportTime(rec.CreatedAt)
		updated, ok2 := exportTime(rec.UpdatedAt)
		if !ok1 || !ok2 {
			writeError(w, http.StatusBadRequest, 107, "record "+strconv.Itoa(i)+": createdAt/updatedAt must be ISO-8601 dates")
			return
		}
		for k := range cols {
			if exportColumns[k] {
				delete(cols, k)
			}
		}
		created, updated = orNow(created), orNow(updated)
		in := conversation.ImportedConversation{ID: rec.ObjectID, Name: rec.Name, Creator: rec.Creator, Members: rec.Members,
			Muted: rec.Muted, Room: rec.Room, System: rec.System, Unique: rec.Unique, UniqueID: rec.UniqueID,
			Created: created, Updated: updated, Columns: cols, Roles: rec.Roles, Silenced: rec.Silenced, Blocked: rec.Blocked}
		added, err := s.cfg.Engine.ImportConversation(r.Context(), app.ID, in)
		if err != nil {
			s.writeEngineError(w, err)
			return
		}
		if added {
			imported++
		} else {
			existing++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"imported": imported, "existing": existing})
}

func orNow(ms int64) int64 {
	if ms <= 0 {
		return nowMs()
	}
	return ms
}

// exportedMessage is a record of LeanCloud's REST history.
type exportedMessage struct {
	MsgID       string   `json:"msg-id"`
	Timestamp   int64    `json:"timestamp"`
	From        string   `json:"from"`
	Data        string   `json:"data"`
	Bin         bool     `json:"bin"`
	MentionAll  bool     `json:"mention-all"`
	MentionPids []string `json:"mention-pids"`
	PatchTs     int64    `json:"patch-timestamp"`
}

// importMessages implements POST /rtm/import/messages {"conv_id",
// "messages": [history records, at most 1000]}: stores them with their
// ids, senders and timestamps (bin data is Base64). Answers
// {"imported": n, "existing": n}.
func (s *Server) importMessages(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		ConvID   string            `json:"conv_id"`
		Messages []exportedMessage `json:"messages"`
	}
	if !decodeBodyLimit(w, r, &body, maxImportBody) {
		return
	}
	if body.ConvID == "" {
		writeError(w, http.StatusBadRequest, 107, "conv_id is required")
		return
	}
	if len(body.Messages) > conversation.MaxImportMessages {
		writeError(w, http.StatusRequestEntityTooLarge, 107, "at most "+strconv.Itoa(conversation.MaxImportMessages)+" messages per call")
		return
	}
	msgs := make([]conversation.ImportedMessage, 0, len(body.Messages))
	for i, m := range body.Messages {
		if m.MsgID == "" || len(m.MsgID) > 64 || m.Timestamp <= 0 || m.From == "" || len(m.From) > 64 {
			writeError(w, http.StatusBadRequest, 107, "message "+strconv.Itoa(i)+": msg-id and from must be 1-64 characters, timestamp positive milliseconds")
			return
		}
		in := conversation.ImportedMessage{ID: m.MsgID, From: m.From, Ts: m.Timestamp, Data: m.Data,
			MentionAll: m.MentionAll, MentionPids: m.MentionPids, PatchTs: m.PatchTs}
		if m.Bin {
			raw, err := base64.StdEncoding.DecodeString(m.Data)
			if err != nil {
				writeError(w, http.StatusBadRequest, 107, "message "+strconv.Itoa(i)+": bin data must be Base64")
				return
			}
			in.Bin, in.Data = raw, ""
			if in.Bin == nil {
				in.Bin = []byte{}
			}
		}
		msgs = append(msgs, in)
	}
	added, err := s.cfg.Engine.ImportMessages(r.Context(), app.ID, convFromInternal(body.ConvID), msgs)
	if err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"imported": added, "existing": len(msgs) - added})
}

// importUnread implements PUT /rtm/import/conversations/{cid}/unread
// {"unread": {"<client>": n}}: sets each member's read pointer so that its
// unread count is n (0 for members not named). Answers {}.
func (s *Server) importUnread(w http.ResponseWriter, r *http.Request, app *apps.App) {
	var body struct {
		Unread map[string]int `json:"unread"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if err := s.cfg.Engine.SetUnread(r.Context(), app.ID, r.PathValue("cid"), body.Unread); err != nil {
		s.writeEngineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
