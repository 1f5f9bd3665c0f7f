package conversation

import "github.com/imcluster/imcluster/node/store"

// StoredMessage is a message as a replica stores it (debug and chaos
// checks read replicas directly).
type StoredMessage struct {
	ID        string
	Timestamp int64
	From      string
	Data      string
}

// MessagePrefix returns the key prefix of a conversation's messages in
// shard.
func MessagePrefix(shard uint16, app, cid string) []byte {
	return store.NewKey(shard, app, store.FamMsg).Str(cid).Bytes()
}

// DecodeStoredMessage decodes one stored message value.
func DecodeStoredMessage(v []byte) (StoredMessage, error) {
	m, err := decodeMessage(v)
	if err != nil {
		return StoredMessage{}, err
	}
	return StoredMessage{ID: m.ID, Timestamp: m.Ts, From: m.From, Data: m.Data}, nil
}
