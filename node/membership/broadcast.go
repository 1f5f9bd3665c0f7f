package membership

import (
	"fmt"

	"github.com/hashicorp/memberlist"
)

// msgEntry tags a user message carrying one roster entry.
const msgEntry = 1

// entryBroadcast gossips one roster entry; a newer broadcast for the same
// node replaces an older one still queued.
type entryBroadcast struct {
	id  string
	msg []byte
}

var _ memberlist.Broadcast = entryBroadcast{}

func (b entryBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(entryBroadcast)
	return ok && ob.id == b.id
}

func (b entryBroadcast) Message() []byte { return b.msg }

func (b entryBroadcast) Finished() {}

func encodeEntryMsg(id string, e entry) []byte {
	b := []byte{msgEntry}
	return encodeTable(b, map[string]entry{id: e})
}

func decodeEntryMsg(b []byte) (string, entry, error) {
	if len(b) < 1 || b[0] != msgEntry {
		return "", entry{}, fmt.Errorf("%w: message type %v", ErrBadMeta, firstByte(b))
	}
	t, err := decodeTable(b[1:])
	if err != nil {
		return "", entry{}, err
	}
	if len(t) != 1 {
		return "", entry{}, fmt.Errorf("%w: entry message with %d entries", ErrBadMeta, len(t))
	}
	for id, e := range t {
		return id, e, nil
	}
	panic("unreachable")
}
