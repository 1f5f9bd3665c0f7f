package store

import (
	"os"
	"testing"
	"time"
)

// TestMain runs the package's tests with stores whose clock is the Unix
// epoch unless a test gives one (Config.Now): most tests write records with
// small versions, which a real clock would find long past the tombstone
// grace (purge.go).
func TestMain(m *testing.M) {
	defaultNow = func() time.Time { return time.UnixMilli(0) }
	os.Exit(m.Run())
}
