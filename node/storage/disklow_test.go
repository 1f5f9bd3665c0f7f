package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// lowKV is a KV whose commits the cluster refuses for a full disk, as the
// replicated KV does when too few of a shard's replicas have space left.
type lowKV struct {
	store.KV
	low atomic.Bool
}

func (k *lowKV) Commit(b *store.Batch) error {
	if k.low.Load() {
		b.Close()
		return wire.Wrap(wire.ErrDiskLow, errors.New("0 of the shard's 3 replicas have storage left, 2 needed"))
	}
	return k.KV.Commit(b)
}

// wantStorageFull checks a write refused for a full disk is answered 507
// "storage full", not 500.
func wantStorageFull(t *testing.T, what string, r resp) {
	t.Helper()
	if r.status != 507 || r.body["code"] != float64(protocol.ErrStorageFull.Code) || r.body["error"] != storageFullMessage {
		t.Fatalf("%s while the disk is low: %d %s, want 507 storage full", what, r.status, r.raw)
	}
}

// TestStorageDiskLowAnswers507: a file upload (and any other write) that
// the store's free-space guard or the cluster refuses is answered HTTP 507
// with the "storage full" code and message, like the REST API; reads still
// work, and the upload succeeds once there is space again.
func TestStorageDiskLowAnswers507(t *testing.T) {
	t.Run("LocalGuard", func(t *testing.T) {
		var free atomic.Uint64
		free.Store(1 << 40)
		st, err := store.Open(store.Config{Dir: "db", FS: vfs.NewMem(), MinFreeBytes: 100 << 20,
			DiskCheckInterval: time.Millisecond, StatFS: func(string) (uint64, error) { return free.Load(), nil },
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		f := newFixture(t, func(c *Config) { c.Store = st })
		setLow := func(low bool) {
			free.Store(map[bool]uint64{true: 1 << 20, false: 1 << 40}[low])
			deadline := time.Now().Add(10 * time.Second)
			for st.DiskLow() != low {
				if time.Now().After(deadline) {
					t.Fatalf("the guard's DiskLow stayed %v", !low)
				}
				time.Sleep(time.Millisecond)
			}
		}
		testDiskLowUpload(t, f, setLow)
	})
	t.Run("Cluster", func(t *testing.T) {
		kv := &lowKV{}
		f := newFixture(t, func(c *Config) { kv.KV = c.Store; c.Store = kv })
		testDiskLowUpload(t, f, kv.low.Store)
	})
}

func testDiskLowUpload(t *testing.T, f *fixture, setLow func(bool)) {
	h := appKey("app-a")
	user := f.do("POST", "/1.1/users", map[string]any{"username": "tom", "password": "cat"}, h...).body["objectId"]
	r := f.do("POST", "/1.1/fileTokens", map[string]any{"name": "a.txt", "metaData": map[string]any{}}, h...)
	if r.status != 200 {
		t.Fatalf("fileTokens: %d %s", r.status, r.raw)
	}
	uploadURL := r.body["upload_url"].(string)
	setLow(true)
	wantStorageFull(t, "upload", f.do("PUT", uploadURL, []byte("hello")))
	wantStorageFull(t, "fileTokens", f.do("POST", "/1.1/fileTokens", map[string]any{"name": "b.txt", "metaData": map[string]any{}}, h...))
	wantStorageFull(t, "sign up", f.do("POST", "/1.1/users", map[string]any{"username": "jerry", "password": "mouse"}, h...))
	if r := f.do("GET", fmt.Sprint("/1.1/users/", user), nil, h...); r.status != 200 || r.body["objectId"] != user {
		t.Fatalf("user read while low: %d %s", r.status, r.raw)
	}
	setLow(false)
	if r := f.do("PUT", uploadURL, []byte("hello")); r.status != 200 {
		t.Fatalf("upload once space is back: %d %s", r.status, r.raw)
	}
}
