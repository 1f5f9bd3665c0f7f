package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/imcluster/imcluster/node/store"
)

// ErrInvalidToken is returned for an unknown, foreign or expired token.
var ErrInvalidToken = errors.New("session: invalid or expired token")

// DefaultTTL is the session-token lifetime when Config.TTL is zero. The
// value LeanCloud used is not known; two days keeps a client that reconnects
// after a weekend's sleep on its token.
const DefaultTTL = 48 * time.Hour

// ShardFunc maps a client to its shard.
type ShardFunc func(app, clientID string) uint16

// Info is what a token remembers about the session that received it.
type Info struct {
	Tag      string `json:"tag,omitempty"`
	DeviceID string `json:"deviceId,omitempty"`
	// ExpiresAt is in Unix milliseconds.
	ExpiresAt int64 `json:"exp"`
}

// Tokens issues, validates and revokes session tokens.
type Tokens struct {
	st    store.KV
	shard ShardFunc
	ttl   time.Duration
	now   func() time.Time
}

// NewTokens returns a token service. ttl zero means DefaultTTL; now nil means
// time.Now.
func NewTokens(st store.KV, shard ShardFunc, ttl time.Duration, now func() time.Time) *Tokens {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{st: st, shard: shard, ttl: ttl, now: now}
}

// TTL returns the token lifetime.
func (t *Tokens) TTL() time.Duration { return t.ttl }

func (t *Tokens) key(app, clientID, token string) []byte {
	return store.NewKey(t.shard(app, clientID), app, store.FamToken).Str(clientID).Str(token)
}

// Issue creates a durable token for (app, clientID).
func (t *Tokens) Issue(app, clientID string, info Info) (string, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("session: token entropy: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	info.ExpiresAt = t.now().Add(t.ttl).UnixMilli()
	v, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("session: encode token: %w", err)
	}
	b := t.st.NewBatch()
	b.Set(t.key(app, clientID, token), v)
	if err := t.st.Commit(b); err != nil {
		return "", fmt.Errorf("session: store token: %w", err)
	}
	return token, nil
}

// Validate returns the info of a valid token of (app, clientID).
func (t *Tokens) Validate(app, clientID, token string) (Info, error) {
	var info Info
	if token == "" || len(token) > 128 {
		return info, ErrInvalidToken
	}
	v, err := t.st.Get(t.key(app, clientID, token))
	if errors.Is(err, store.ErrNotFound) {
		return info, ErrInvalidToken
	}
	if err != nil {
		return info, fmt.Errorf("session: read token: %w", err)
	}
	if err := json.Unmarshal(v, &info); err != nil {
		return info, fmt.Errorf("session: decode token: %w", err)
	}
	if t.now().UnixMilli() >= info.ExpiresAt {
		return info, ErrInvalidToken
	}
	return info, nil
}

// Revoke deletes a token. Revoking an unknown token is not an error.
func (t *Tokens) Revoke(app, clientID, token string) error {
	if token == "" {
		return nil
	}
	b := t.st.NewBatch()
	b.Delete(t.key(app, clientID, token))
	if err := t.st.Commit(b); err != nil {
		return fmt.Errorf("session: revoke token: %w", err)
	}
	return nil
}

// Sweep deletes the expired tokens of app in shard, examining at most limit
// tokens (limit <= 0 means all), and returns how many it deleted. Expired
// tokens are refused by Validate anyway; the sweep reclaims their space, so
// a flood of logins does not grow the disk for longer than the token TTL.
// Run it on the shards this node coordinates.
func (t *Tokens) Sweep(ctx context.Context, app string, shard uint16, limit int) (int, error) {
	now := t.now().UnixMilli()
	var expired [][]byte
	seen := 0
	prefix := store.NewKey(shard, app, store.FamToken).Bytes()
	err := t.st.ScanPrefix(prefix, false, func(k, v []byte) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		seen++
		var info Info
		if json.Unmarshal(v, &info) != nil || now >= info.ExpiresAt {
			expired = append(expired, append([]byte(nil), k...))
		}
		return limit <= 0 || seen < limit, nil
	})
	if err != nil {
		return 0, fmt.Errorf("session: sweep shard %d: %w", shard, err)
	}
	if len(expired) == 0 {
		return 0, nil
	}
	b := t.st.NewBatch()
	for _, k := range expired {
		b.Delete(k)
	}
	if err := t.st.Commit(b); err != nil {
		return 0, fmt.Errorf("session: sweep shard %d: %w", shard, err)
	}
	return len(expired), nil
}
