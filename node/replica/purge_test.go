package replica

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
)

// Every replica's sync worker deletes the whole-record tombstones past
// their grace from the shards it replicates, one shard a round, and leaves
// younger tombstones and values alone.
func TestReplicaPurgesExpiredTombstones(t *testing.T) {
	ahead := func() time.Time { return time.Now().Add(store.RecordTombstoneGrace + time.Hour) }
	st, err := store.Open(store.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Now: ahead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	version := uint64(time.Now().UnixMilli()) << HLCLogicalBits // older than the grace by the store's clock
	young := uint64(ahead().Add(-time.Hour).UnixMilli()) << HLCLogicalBits
	key := func(shard uint16, name string) []byte {
		return store.NewKey(shard, "app", store.FamOrder).Str(name).Bytes()
	}
	var ops []store.Op
	for shard := range uint16(4) {
		ops = append(ops,
			store.Op{Kind: store.OpSet, Key: key(shard, "old"), Value: store.EncodeVersioned(version, true, nil)},
			store.Op{Kind: store.OpSet, Key: key(shard, "young"), Value: store.EncodeVersioned(young, true, nil)},
			store.Op{Kind: store.OpSet, Key: key(shard, "value"), Value: store.EncodeVersioned(version, false, []byte("v"))})
	}
	if err := st.ApplyVersioned(ops); err != nil {
		t.Fatal(err)
	}

	rg, err := ring.New(ring.Config{Shards: 4, ReplicationFactor: 1}, 1, []ring.Member{{ID: "a", State: ring.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultLocalConfig()
	cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum, cfg.Logger = "a", st, 4, 1, slog.New(slog.DiscardHandler)
	cfg.AntiEntropyInterval = 10 * time.Millisecond
	rs, err := New(cfg, fixedPeers{rg: rg})
	if err != nil {
		t.Fatal(err)
	}
	rs.Start()
	t.Cleanup(rs.Shutdown)

	gone := func(k []byte) bool {
		_, err := st.Get(k)
		return errors.Is(err, store.ErrNotFound)
	}
	waitFor(t, "the expired tombstones purged", func() bool {
		for shard := range uint16(4) {
			if !gone(key(shard, "old")) {
				return false
			}
		}
		return true
	})
	for shard := range uint16(4) {
		if gone(key(shard, "young")) || gone(key(shard, "value")) {
			t.Fatalf("shard %d: a tombstone within the grace or a value was purged", shard)
		}
	}
}
