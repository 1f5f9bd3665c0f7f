package client

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Built-in message types (_lctype), LEANCLOUD-RTM.md 3.10. Positive values
// are app-defined; 0 means "no type".
const (
	TypeText     = -1
	TypeImage    = -2
	TypeAudio    = -3
	TypeVideo    = -4
	TypeLocation = -5
	TypeFile     = -6
	TypeRecalled = -127
)

// Message is a stored or pushed message. Content holds the raw text (JSON
// for typed messages, see Typed); Binary is non-nil for binary messages.
// A Message is a value owned by whoever received it.
type Message struct {
	ID             string
	ConversationID string
	From           string
	// Timestamp is the server timestamp (millisecond precision).
	Timestamp   time.Time
	Content     string
	Binary      []byte
	Transient   bool
	MentionAll  bool
	MentionPids []string
	// PatchedAt is the time of the last edit or recall, zero if never.
	PatchedAt time.Time
	// DeliveredAt and ReadAt come from history in 2-member conversations.
	DeliveredAt time.Time
	ReadAt      time.Time
}

// Typed parses Content as a typed message. It fails for binary messages and
// content that is not a JSON object with an integer _lctype.
func (m *Message) Typed() (*TypedMessage, error) {
	if m.Binary != nil {
		return nil, errors.New("client: binary message has no type")
	}
	return ParseTypedMessage(m.Content)
}

// File is the _lcfile of an image, audio, video or file message.
type File struct {
	URL      string         `json:"url"`
	ObjectID string         `json:"objId,omitempty"`
	MetaData map[string]any `json:"metaData,omitempty"`
}

// Location is the _lcloc of a location message.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// TypedMessage is the JSON layout of rich-media messages: _lctype, _lctext,
// _lcattrs, _lcfile, _lcloc, plus any custom top-level fields (Extra) of
// app-defined types.
type TypedMessage struct {
	Type       int
	Text       string
	Attributes map[string]any
	File       *File
	Location   *Location
	Extra      map[string]any
}

// reservedKeys are the keys TypedMessage maps to fields.
var reservedKeys = map[string]bool{"_lctype": true, "_lctext": true, "_lcattrs": true, "_lcfile": true, "_lcloc": true}

// Encode returns the JSON text sent as the message content. Unset fields
// are omitted, e.g. {"_lctype":-1,"_lctext":"hi"}.
func (t *TypedMessage) Encode() (string, error) {
	obj := make(map[string]any, len(t.Extra)+5)
	for k, v := range t.Extra {
		if reservedKeys[k] {
			return "", fmt.Errorf("client: typed message: extra key %q is reserved", k)
		}
		obj[k] = v
	}
	obj["_lctype"] = t.Type
	if t.Text != "" {
		obj["_lctext"] = t.Text
	}
	if t.Attributes != nil {
		obj["_lcattrs"] = t.Attributes
	}
	if t.File != nil {
		obj["_lcfile"] = t.File
	}
	if t.Location != nil {
		obj["_lcloc"] = t.Location
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("client: typed message: %w", err)
	}
	return string(b), nil
}

// ParseTypedMessage decodes typed-message content.
func ParseTypedMessage(content string) (*TypedMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(content), &raw); err != nil {
		return nil, fmt.Errorf("client: not a typed message: %w", err)
	}
	t := &TypedMessage{}
	typ, ok := raw["_lctype"]
	if !ok {
		return nil, errors.New("client: not a typed message: no _lctype")
	}
	if err := json.Unmarshal(typ, &t.Type); err != nil {
		return nil, fmt.Errorf("client: _lctype: %w", err)
	}
	for k, v := range raw {
		var err error
		switch k {
		case "_lctype":
		case "_lctext":
			err = json.Unmarshal(v, &t.Text)
		case "_lcattrs":
			err = json.Unmarshal(v, &t.Attributes)
		case "_lcfile":
			err = json.Unmarshal(v, &t.File)
		case "_lcloc":
			err = json.Unmarshal(v, &t.Location)
		default:
			if t.Extra == nil {
				t.Extra = make(map[string]any)
			}
			var x any
			err = json.Unmarshal(v, &x)
			t.Extra[k] = x
		}
		if err != nil {
			return nil, fmt.Errorf("client: typed message field %s: %w", k, err)
		}
	}
	return t, nil
}

// Priority is the delivery priority of chat-room messages.
type Priority int32

// Priorities (GenericCommand.priority); zero means unset.
const (
	PriorityHigh   Priority = 1
	PriorityNormal Priority = 2
	PriorityLow    Priority = 3
)

// OutgoingMessage is a message to send. Build one with NewText, NewTyped,
// NewRaw or NewBinary and set the options on it.
type OutgoingMessage struct {
	Content string
	Binary  []byte
	// Transient messages are not stored and only reach online members.
	Transient bool
	// Receipt asks for delivery and read receipts (ReceiptEvent).
	Receipt bool
	// Will holds the message until the sender drops offline unexpectedly.
	Will        bool
	MentionAll  bool
	MentionPids []string
	// PushData is the custom offline-push payload.
	PushData map[string]any
	Priority Priority
	// DedupToken (dt) lets the server drop a re-sent message; generated
	// when empty. Reuse the same OutgoingMessage to resend safely.
	DedupToken string
}

// NewText returns a text message ({"_lctype":-1,"_lctext":text}).
func NewText(text string) *OutgoingMessage {
	s, _ := (&TypedMessage{Type: TypeText, Text: text}).Encode()
	return &OutgoingMessage{Content: s}
}

// NewTyped returns a message with the typed content t.
func NewTyped(t *TypedMessage) (*OutgoingMessage, error) {
	s, err := t.Encode()
	if err != nil {
		return nil, err
	}
	return &OutgoingMessage{Content: s}, nil
}

// NewRaw returns a message whose content is sent verbatim (the SDK's plain
// Message('hello')).
func NewRaw(content string) *OutgoingMessage { return &OutgoingMessage{Content: content} }

// NewBinary returns a binary message (the SDK's BinaryMessage).
func NewBinary(b []byte) *OutgoingMessage {
	if b == nil {
		b = []byte{}
	}
	return &OutgoingMessage{Binary: b}
}

// newUUID returns a random RFC 4122 version 4 UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
