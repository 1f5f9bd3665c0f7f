package membership

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"
)

// ErrBadKeyring is returned by ParseKeyring for a malformed keyring file.
var ErrBadKeyring = errors.New("membership: bad gossip keyring")

// maxKeyringKeys bounds a keyring file: a rotation needs two keys at a time;
// a few more leave room for an operator's mistakes, not for a flood.
const maxKeyringKeys = 16

// ParseKeyring parses a gossip keyring file: one standard base64 AES key
// (16, 24 or 32 bytes) per line. The first key is the primary (it encrypts
// outgoing gossip); every key decrypts. Blank lines and lines starting with
// '#' are skipped.
func ParseKeyring(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d is not base64: %w", ErrBadKeyring, n, err)
		}
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("%w: line %d: %d-byte key, want 16, 24 or 32 bytes", ErrBadKeyring, n, len(k))
		}
		for _, o := range keys {
			if bytes.Equal(o, k) {
				return nil, fmt.Errorf("%w: line %d repeats a key", ErrBadKeyring, n)
			}
		}
		keys = append(keys, k)
		if len(keys) > maxKeyringKeys {
			return nil, fmt.Errorf("%w: more than %d keys", ErrBadKeyring, maxKeyringKeys)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyring, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key", ErrBadKeyring)
	}
	return keys, nil
}

// NewKeyring returns a memberlist keyring holding keys, keys[0] primary.
// Pass it in Config.Keyring and later to ApplyKeyring.
func NewKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key", ErrBadKeyring)
	}
	return memberlist.NewKeyring(keys[1:], keys[0])
}

// ApplyKeyring makes kr hold exactly keys with keys[0] primary, in the
// order of a safe rotation: install new keys, switch the primary, then
// remove keys no longer listed. It is safe while memberlist uses kr.
func ApplyKeyring(kr *memberlist.Keyring, keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no key", ErrBadKeyring)
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("%w: %w", ErrBadKeyring, err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("%w: %w", ErrBadKeyring, err)
	}
	for _, old := range kr.GetKeys() {
		if !containsKey(keys, old) {
			if err := kr.RemoveKey(old); err != nil {
				return fmt.Errorf("%w: %w", ErrBadKeyring, err)
			}
		}
	}
	return nil
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, o := range keys {
		if bytes.Equal(o, k) {
			return true
		}
	}
	return false
}

// KeyFingerprints returns a fingerprint of each key of kr, primary first:
// the first 8 bytes of the key's SHA-256 in hex. It identifies a key
// without revealing it (the admin API reports it, so an operator can wait
// until every node holds a key before the next rotation step).
func KeyFingerprints(kr *memberlist.Keyring) []string {
	keys := kr.GetKeys() // primary first
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = KeyFingerprint(k)
	}
	return out
}

// KeyFingerprint returns the fingerprint of one key (see KeyFingerprints).
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}
