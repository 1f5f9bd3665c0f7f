package membership_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/node/membership"
)

func TestMembershipParseKeyring(t *testing.T) {
	k16, k32 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 32)
	b64 := base64.StdEncoding.EncodeToString
	keys, err := membership.ParseKeyring([]byte("# rotation\n" + b64(k32) + "\n\n  " + b64(k16) + "  \n"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k32) || !bytes.Equal(keys[1], k16) {
		t.Fatalf("ParseKeyring = %x, %v", keys, err)
	}
	for name, in := range map[string]string{
		"empty":     "\n# nothing\n",
		"not b64":   "not base64!\n",
		"short key": b64([]byte("short")),
		"repeated":  b64(k16) + "\n" + b64(k16),
	} {
		if _, err := membership.ParseKeyring([]byte(in)); !errors.Is(err, membership.ErrBadKeyring) {
			t.Errorf("%s: err %v, want ErrBadKeyring", name, err)
		}
	}
}

func TestMembershipApplyKeyringRotation(t *testing.T) {
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	fa, fb := membership.KeyFingerprint(a), membership.KeyFingerprint(b)
	kr, err := membership.NewKeyring([][]byte{a})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		keys [][]byte
		want []string
	}{
		{[][]byte{a, b}, []string{fa, fb}}, // install b
		{[][]byte{b, a}, []string{fb, fa}}, // b primary
		{[][]byte{b}, []string{fb}},        // remove a
	} {
		if err := membership.ApplyKeyring(kr, step.keys); err != nil {
			t.Fatal(err)
		}
		if got := membership.KeyFingerprints(kr); !slices.Equal(got, step.want) {
			t.Fatalf("fingerprints %v, want %v", got, step.want)
		}
	}
	if fp := membership.KeyFingerprint(a); len(fp) != 16 || strings.Contains(fp, base64.StdEncoding.EncodeToString(a)) {
		t.Fatalf("fingerprint %q", fp)
	}
}
