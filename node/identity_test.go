package node_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/store"
)

// startErr starts a node with cfg on 127.0.0.1 port 0 and returns Start's
// error; a node that starts is stopped again.
func startErr(t *testing.T, mutate func(*node.Config)) error {
	t.Helper()
	cfg := node.Config{
		NodeID: "imnode-0", ClientAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", TransportAddr: "127.0.0.1:0", LocalTimings: true,
		Apps: []apps.App{apps.Dev()}, Shards: 16, ShutdownGrace: time.Second, Insecure: true,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	mutate(&cfg)
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return nil
}

func TestNodeIdentityRefusals(t *testing.T) {
	dir := t.TempDir()
	if err := startErr(t, func(c *node.Config) { c.DataDir, c.Bootstrap, c.ClusterID = dir, true, "c1" }); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	id, err := store.ReadIdentity(dir)
	if err != nil || id != (store.Identity{ClusterID: "c1", NodeID: "imnode-0", Shards: 16, DataFormat: store.DataFormat}) {
		t.Fatalf("identity after bootstrap = %+v, %v", id, err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*node.Config)
		is     error
		msg    string
	}{
		{"wrong shard count", func(c *node.Config) { c.Shards = 64 }, node.ErrIdentity, "created with --shards 16, this start has --shards 64"},
		{"wrong node id", func(c *node.Config) { c.NodeID = "imnode-1" }, node.ErrIdentity, `belongs to node "imnode-0", this start has --node-id "imnode-1"`},
		{"wrong cluster id", func(c *node.Config) { c.ClusterID = "c2" }, node.ErrIdentity, `belongs to cluster "c1", this start has --cluster-id "c2"`},
	} {
		err := startErr(t, func(c *node.Config) { c.DataDir = dir; tc.mutate(c) })
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Start = %v, want %v naming %q", tc.name, err, tc.is, tc.msg)
		}
	}
	// The refusals changed nothing: the node starts as before.
	if err := startErr(t, func(c *node.Config) { c.DataDir = dir }); err != nil {
		t.Fatalf("restart after refusals: %v", err)
	}
	if got, _ := store.ReadIdentity(dir); got != id {
		t.Fatalf("identity changed to %+v, was %+v", got, id)
	}

	// A member of a multi-node cluster never starts alone.
	id.Clustered = true
	if err := store.WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	err = startErr(t, func(c *node.Config) { c.DataDir, c.Bootstrap = dir, true })
	if !errors.Is(err, node.ErrNeedJoin) || !strings.Contains(err.Error(), `member of cluster "c1" with other nodes`) {
		t.Fatalf("restart of a clustered node without --join: %v, want ErrNeedJoin", err)
	}

	// A directory written by a newer imnode.
	id.DataFormat = store.DataFormat + 1
	if err := store.WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	err = startErr(t, func(c *node.Config) { c.DataDir, c.Join = dir, []string{"127.0.0.1:1"} })
	if !errors.Is(err, node.ErrIdentity) || !strings.Contains(err.Error(), "newer than this imnode's") {
		t.Fatalf("newer data format: %v, want ErrIdentity", err)
	}
}

// A new data directory needs --bootstrap or --join.
func TestNodeIdentityNewNodeNeedsBootstrapOrJoin(t *testing.T) {
	dir := t.TempDir()
	err := startErr(t, func(c *node.Config) { c.DataDir = dir })
	if !errors.Is(err, node.ErrNeedJoin) || !strings.Contains(err.Error(), "a new node needs --join") {
		t.Fatalf("Start = %v, want ErrNeedJoin", err)
	}
	if err := startErr(t, func(c *node.Config) { c.DataDir, c.Bootstrap = dir, true }); err != nil {
		t.Fatalf("bootstrap after the refusal: %v", err)
	}
	id, err := store.ReadIdentity(dir)
	if err != nil || id.ClusterID == "" {
		t.Fatalf("bootstrap wrote identity %+v, %v; want a generated cluster id", id, err)
	}
	// A single-node cluster restarts without --join (it never had other
	// members), and --bootstrap again is ignored.
	for _, boot := range []bool{false, true} {
		if err := startErr(t, func(c *node.Config) { c.DataDir, c.Bootstrap = dir, boot }); err != nil {
			t.Fatalf("restart (bootstrap %v): %v", boot, err)
		}
		if got, _ := store.ReadIdentity(dir); got != id {
			t.Fatalf("restart changed the identity to %+v, was %+v", got, id)
		}
	}
}
