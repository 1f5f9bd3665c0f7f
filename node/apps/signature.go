package apps

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // LeanCloud's signature scheme is HMAC-SHA1; kept for SDK compatibility.
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sign returns lowercase hex HMAC-SHA1(masterKey, msg).
func (a *App) Sign(msg string) string {
	m := hmac.New(sha1.New, []byte(a.MasterKey))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// LoginMessage is the signed string of a login: appId:clientId::t:n.
func LoginMessage(appID, clientID string, t int64, n string) string {
	return fmt.Sprintf("%s:%s::%d:%s", appID, clientID, t, n)
}

// ConversationMessage is the signed string of a conversation action.
// action is "create" (cid empty), "invite" or "kick".
func ConversationMessage(appID, clientID, cid string, members []string, t int64, n, action string) string {
	sorted := append([]string(nil), members...)
	sort.Strings(sorted)
	ids := strings.Join(sorted, ":")
	if action == "create" {
		return fmt.Sprintf("%s:%s:%s:%d:%s", appID, clientID, ids, t, n)
	}
	return fmt.Sprintf("%s:%s:%s:%s:%d:%s:%s", appID, clientID, cid, ids, t, n, action)
}

// Verify checks signature s over msg with timestamp t (milliseconds or
// seconds, both accepted) against now.
func (a *App) Verify(msg, s string, t int64, now time.Time) error {
	if s == "" {
		return fmt.Errorf("%w: missing", ErrSignature)
	}
	ts := time.UnixMilli(t)
	if t < 1e11 { // a seconds timestamp (ms values passed 1e11 in 1973)
		ts = time.Unix(t, 0)
	}
	if d := now.Sub(ts); d > SignatureValidity || d < -SignatureValidity {
		return fmt.Errorf("%w: timestamp %s outside the %s window", ErrSignature, strconv.FormatInt(t, 10), SignatureValidity)
	}
	want := a.Sign(msg)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(s))) {
		return fmt.Errorf("%w: mismatch", ErrSignature)
	}
	return nil
}
