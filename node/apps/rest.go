package apps

import (
	"crypto/md5" //nolint:gosec // LeanCloud's X-LC-Sign scheme is MD5; kept for SDK compatibility.
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// RESTSignWindow is how far an X-LC-Sign timestamp may be from now.
const RESTSignWindow = 15 * time.Minute

// AuthenticateREST checks LeanCloud's REST credentials of an app: the
// X-LC-Key header (the app key, or "<masterKey>,master") or, when it is
// empty, X-LC-Sign ("md5(timestamp + key),timestamp[,master]", timestamp in
// milliseconds within window of now). It reports whether the master key was
// used and whether the credentials are valid.
func AuthenticateREST(appKey, masterKey, key, sign string, now time.Time, window time.Duration) (master, ok bool) {
	if key != "" {
		if k, isMaster := strings.CutSuffix(key, ",master"); isMaster {
			return true, masterKey != "" && equal(k, masterKey)
		}
		return false, appKey != "" && equal(key, appKey)
	}
	parts := strings.Split(sign, ",")
	if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "master") {
		return false, false
	}
	ts, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return false, false
	}
	if d := now.Sub(time.UnixMilli(ts)); d > window || d < -window {
		return false, false
	}
	secret := appKey
	if len(parts) == 3 {
		master, secret = true, masterKey
	}
	if secret == "" {
		return false, false
	}
	sum := md5.Sum([]byte(parts[1] + secret)) //nolint:gosec // protocol-mandated
	return master, equal(strings.ToLower(parts[0]), hex.EncodeToString(sum[:]))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
