package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestStoreIdentityRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadIdentity(dir); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("ReadIdentity of an empty dir: %v, want ErrNoIdentity", err)
	}
	want := Identity{ClusterID: "c1", NodeID: "imnode-0", Shards: 16, DataFormat: DataFormat, Clustered: true}
	if err := WriteIdentity(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIdentity(dir)
	if err != nil || got != want {
		t.Fatalf("ReadIdentity = %+v, %v; want %+v", got, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, IdentityFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestStoreIdentityRejectsGarbage(t *testing.T) {
	for name, content := range map[string]string{
		"not json":      "{",
		"unknown field": `{"nodeId":"a","shards":1,"dataFormat":1,"color":"red"}`,
		"no node id":    `{"shards":1,"dataFormat":1}`,
		"too large":     `{"nodeId":"` + strings.Repeat("a", maxIdentitySize) + `","shards":1,"dataFormat":1}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, IdentityFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadIdentity(dir); err == nil || errors.Is(err, ErrNoIdentity) {
			t.Errorf("%s: ReadIdentity = %v, want a parse error", name, err)
		}
	}
}

func TestStoreIdentityCheckNamesTheDifference(t *testing.T) {
	have := Identity{ClusterID: "c1", NodeID: "imnode-1", Shards: 256, DataFormat: DataFormat}
	for _, tc := range []struct {
		name string
		have Identity
		want Identity
		msg  string // "" means accepted
	}{
		{"same", have, Identity{NodeID: "imnode-1", Shards: 256, ClusterID: "c1"}, ""},
		{"cluster id not given", have, Identity{NodeID: "imnode-1", Shards: 256}, ""},
		{"node id", have, Identity{NodeID: "imnode-2", Shards: 256}, `belongs to node "imnode-1", this start has --node-id "imnode-2"`},
		{"shards", have, Identity{NodeID: "imnode-1", Shards: 64}, "created with --shards 256, this start has --shards 64"},
		{"cluster id", have, Identity{NodeID: "imnode-1", Shards: 256, ClusterID: "c2"}, `belongs to cluster "c1", this start has --cluster-id "c2"`},
		{"newer format", Identity{NodeID: "imnode-1", Shards: 256, DataFormat: DataFormat + 1}, Identity{NodeID: "imnode-1", Shards: 256}, "newer than this imnode's"},
	} {
		err := tc.have.Check(tc.want)
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%s: Check = %v, want nil", tc.name, err)
		case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
			t.Errorf("%s: Check = %v, want an error containing %q", tc.name, err, tc.msg)
		}
	}
}

// An existing database keeps its format until Upgrade raises it.
func TestStoreFormatRaisedOnlyByUpgrade(t *testing.T) {
	dir := t.TempDir()
	old := pebble.FormatMinSupported
	if old >= PebbleFormat {
		t.Fatalf("test needs a format below PebbleFormat %d", PebbleFormat)
	}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: old, Merger: lwwMerger})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Format(); got != old {
		t.Fatalf("Open raised the format to %d, want it left at %d", got, old)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := Upgrade(Config{Dir: dir})
	if err != nil || before != old {
		t.Fatalf("Upgrade = %d, %v; want %d, nil", before, err, old)
	}
	s, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if got := s.Format(); got != PebbleFormat {
		t.Fatalf("format after Upgrade = %d, want %d", got, PebbleFormat)
	}
}

func TestStoreNewDatabaseAtPinnedFormat(t *testing.T) {
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "new")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if got := s.Format(); got != PebbleFormat {
		t.Fatalf("new database at format %d, want %d", got, PebbleFormat)
	}
}
