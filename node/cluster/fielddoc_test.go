package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/test/harness"
)

const fieldTestShards = 4

// startFieldTestNodes starts n in-process nodes (R = n, W = 2, memory
// stores) joined into one cluster and waits until each is active with
// every shard ready. It returns the nodes and their stores.
func startFieldTestNodes(t *testing.T, n int, antiEntropy time.Duration) ([]*Cluster, []*store.Store) {
	t.Helper()
	var nodes []*Cluster
	var stores []*store.Store
	for i := range n {
		st, err := store.Open(store.Config{Dir: "/db", FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		cfg := DefaultLocalConfig()
		cfg.NodeID, cfg.Store, cfg.Shards, cfg.ReplicationFactor, cfg.WriteQuorum = fmt.Sprintf("f%d", i), st, fieldTestShards, n, 2
		cfg.GossipAddr, cfg.TransportAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Replica.AntiEntropyInterval = antiEntropy
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", i)
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Shutdown) // runs before the store's Close
		nodes = append(nodes, c)
		stores = append(stores, st)
	}
	harness.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		for _, c := range nodes {
			if len(c.Snapshot().Members) != n || c.Ring().Epoch() != nodes[0].Ring().Epoch() || !c.Active() {
				return fmt.Errorf("%s: %d members, active %v", c.cfg.NodeID, len(c.Snapshot().Members), c.Active())
			}
			for _, sh := range c.Replicated() {
				if !c.rep.Ready(uint16(sh)) {
					return fmt.Errorf("%s: shard %d not ready", c.cfg.NodeID, sh)
				}
			}
		}
		// Every node gets an answer for every shard (someone coordinates).
		for _, c := range nodes {
			for sh := range uint16(fieldTestShards) {
				probe := store.NewKey(sh, "app", store.FamConv).Str("probe").Bytes()
				if _, err := c.KV().Get(probe); err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("%s: shard %d: %w", c.cfg.NodeID, sh, err)
				}
			}
		}
		return nil
	})
	return nodes, stores
}

// fieldDoc returns the VersionDoc record of fields at version, as a
// coordinator writes it.
func fieldDoc(t *testing.T, version uint64, fields ...store.Field) []byte {
	t.Helper()
	var b store.Batch
	b.MergeFields([]byte("k"), fields)
	rec, err := store.DocRecord(version, b.Ops()[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// readFields reads key with get and returns its fields (nil when not
// found).
func readFields(t *testing.T, get func([]byte) ([]byte, error), key []byte) (map[string]string, error) {
	t.Helper()
	v, err := get(key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	fields, err := store.DecodeFields(v)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range fields {
		out[f.Name] = string(f.Value)
	}
	return out, nil
}

// settled is a version from before any anti-entropy cutoff: the i-th
// logical tick of one wall-clock millisecond an hour before the package's
// tests started, so that settled(i) < settled(j) whenever i < j. (Taking
// the wall clock at each call let a later millisecond make settled(2)
// above settled(3) on a loaded machine.)
func settled(i int) uint64 {
	return settledBase + uint64(i)
}

var settledBase = uint64(time.Now().Add(-time.Hour).UnixMilli()) << replica.HLCLogicalBits

// TestClusterFieldDocsMergeOnPull: two replicas each accepted a different
// partial update of one conversation (one renamed it and removed a member,
// the other added a member and re-added the removed one earlier); after
// each pulls from the other they hold the same record with both changes,
// per field.
func TestClusterFieldDocsMergeOnPull(t *testing.T) {
	nodes, stores := startFieldTestNodes(t, 3, time.Hour)
	const shard = 2
	key := store.NewKey(shard, "app", store.FamConv).Str("conv").Bytes()
	base := fieldDoc(t, settled(1), store.Field{Name: "name", Value: []byte("old")}, store.Field{Name: "m/tom"})
	for _, st := range stores {
		if err := st.ApplyVersioned([]store.Op{{Kind: store.OpSet, Key: key, Value: base}}); err != nil {
			t.Fatal(err)
		}
	}
	onA := fieldDoc(t, settled(3), store.Field{Name: "name", Value: []byte("new")}, store.Field{Name: "m/tom", Deleted: true})
	onB := fieldDoc(t, settled(2), store.Field{Name: "m/jerry"}, store.Field{Name: "m/tom"})
	if err := stores[0].ApplyVersioned([]store.Op{{Kind: store.OpSet, Key: key, Value: onA}}); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].ApplyVersioned([]store.Op{{Kind: store.OpSet, Key: key, Value: onB}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := nodes[0].rep.Pull(ctx, shard, nodes[1].cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].rep.Pull(ctx, shard, nodes[0].cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	a, errA := stores[0].Get(key)
	b, errB := stores[1].Get(key)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("replicas differ after pulls: %x (%v) vs %x (%v)", a, errA, b, errB)
	}
	want := map[string]string{"name": "new", "m/jerry": ""} // m/tom: the later delete wins
	for i, c := range nodes[:2] {
		got, err := readFields(t, c.rep.LocalGet, key)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("replica %d reads %v, %v; want %v", i, got, err, want)
		}
	}
	// The third replica, which saw neither update, gets both from one pull.
	if err := nodes[2].rep.Pull(ctx, shard, nodes[0].cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	for _, c := range nodes {
		got, err := readFields(t, c.KV().Get, key)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("cluster read at %s: %v, %v; want %v", c.cfg.NodeID, got, err, want)
		}
	}
}

// TestClusterFieldDocsConvergeByAntiEntropy: partial updates applied to
// different replicas reach every replica through anti-entropy alone.
func TestClusterFieldDocsConvergeByAntiEntropy(t *testing.T) {
	nodes, stores := startFieldTestNodes(t, 3, 200*time.Millisecond)
	key := store.NewKey(1, "app", store.FamConv).Str("conv").Bytes()
	updates := [][]byte{
		fieldDoc(t, settled(1), store.Field{Name: "name", Value: []byte("n")}, store.Field{Name: "m/a"}),
		fieldDoc(t, settled(2), store.Field{Name: "m/b"}),
		fieldDoc(t, settled(3), store.Field{Name: "m/c"}, store.Field{Name: "c/color", Value: []byte(`"red"`)}),
	}
	for i, st := range stores {
		if err := st.ApplyVersioned([]store.Op{{Kind: store.OpSet, Key: key, Value: updates[i]}}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"name": "n", "m/a": "", "m/b": "", "m/c": "", "c/color": `"red"`}
	harness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for i, c := range nodes {
			got, err := readFields(t, c.rep.LocalGet, key)
			if err != nil {
				return err
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("replica %d holds %v, want %v", i, got, want)
			}
		}
		return nil
	})
}

// TestClusterFieldUpdatesThroughKV: field updates committed through
// different nodes' KV (so coordinated locally or forwarded) merge per
// field; a whole-record delete removes older fields; a doc whose fields
// are all deleted reads as not found, also in scans.
func TestClusterFieldUpdatesThroughKV(t *testing.T) {
	nodes, stores := startFieldTestNodes(t, 3, time.Hour)
	key := store.NewKey(3, "app", store.FamConv).Str("conv").Bytes()
	commit := func(c *Cluster, fn func(b *store.Batch)) {
		t.Helper()
		b := c.KV().NewBatch()
		fn(b)
		if err := c.KV().Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	wantFields := func(c *Cluster, want map[string]string) {
		t.Helper()
		got, err := readFields(t, c.KV().Get, key)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s reads %v, %v; want %v", c.cfg.NodeID, got, err, want)
		}
	}
	commit(nodes[0], func(b *store.Batch) {
		b.MergeFields(key, []store.Field{{Name: "name", Value: []byte("a")}, {Name: "m/x"}})
	})
	commit(nodes[1], func(b *store.Batch) { b.MergeFields(key, []store.Field{{Name: "m/y"}}) })
	commit(nodes[2], func(b *store.Batch) { b.MergeFields(key, []store.Field{{Name: "m/x", Deleted: true}}) })
	for _, c := range nodes {
		wantFields(c, map[string]string{"name": "a", "m/y": ""})
	}

	commit(nodes[1], func(b *store.Batch) {
		b.Delete(key)
		b.MergeFields(key, []store.Field{{Name: "name", Value: []byte("b")}})
	})
	wantFields(nodes[0], map[string]string{"name": "b"})

	commit(nodes[2], func(b *store.Batch) { b.MergeFields(key, []store.Field{{Name: "name", Deleted: true}}) })
	wantFields(nodes[0], nil)
	other := store.NewKey(3, "app", store.FamConv).Str("other").Bytes()
	commit(nodes[0], func(b *store.Batch) { b.MergeFields(other, []store.Field{{Name: "m/z"}}) })
	var scanned []string
	err := nodes[1].KV().ScanPrefix(store.NewKey(3, "app", store.FamConv).Bytes(), false, func(k, v []byte) (bool, error) {
		fields, err := store.DecodeFields(v)
		if err != nil {
			return false, err
		}
		scanned = append(scanned, fmt.Sprintf("%x:%d", k, len(fields)))
		return true, nil
	})
	if err != nil || len(scanned) != 1 || scanned[0] != fmt.Sprintf("%x:1", other) {
		t.Fatalf("scan = %v, %v; want only %x with one field", scanned, err, other)
	}
	// Every replica that acknowledged holds the same record; the third
	// one may lag behind a W = 2 write, so compare after a pull.
	for _, c := range nodes {
		for _, peer := range nodes {
			if peer != c {
				if err := c.rep.Pull(context.Background(), 3, peer.cfg.NodeID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	first, _ := stores[0].Get(key)
	for i, st := range stores[1:] {
		if got, _ := st.Get(key); !bytes.Equal(got, first) {
			t.Fatalf("replica %d holds %x, replica 0 %x", i+1, got, first)
		}
	}
}
