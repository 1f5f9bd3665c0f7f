package security_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/test/chaos"
	"github.com/imcluster/imcluster/test/harness"
)

// Rotation timings.
const (
	// stepTimeout bounds the wait for every node to report a rotation step:
	// the nodes poll the files every second.
	stepTimeout = 20 * time.Second
	// loadGap is how long the load runs between two steps, so each step
	// happens under traffic (a paced gap, not a wait for a condition).
	loadGap = 2 * time.Second
	// settleTimeout bounds the settling before the ledger check.
	settleTimeout = 60 * time.Second
)

// underLoad starts senders with a ledger on c.
func underLoad(t *testing.T, c *harness.Cluster) (*chaos.Load, *chaos.Ledger) {
	t.Helper()
	ledger := chaos.NewLedger()
	cfg := chaos.LoadConfig{AppID: apps.DevAppID, Senders: 6, Seed: uint64(time.Now().UnixNano()),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	load, err := chaos.StartLoad(t.Context(), cfg, c.ClientURLs(nil), ledger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(load.Stop)
	return load, ledger
}

// waitAll polls every running node's status until check accepts it.
func waitAll(t *testing.T, c *harness.Cluster, what string, check func(adminapi.NodeStatus) error) {
	t.Helper()
	harness.CheckFor(t, stepTimeout, 100*time.Millisecond, func() error {
		for _, nd := range c.Running() {
			st, err := nd.Admin().Node(context.Background())
			if err != nil {
				return err
			}
			if err := check(st); err != nil {
				return fmt.Errorf("%s: %s: %w", nd.ID(), what, err)
			}
		}
		return nil
	})
}

func pause() {
	t := time.NewTimer(loadGap)
	defer t.Stop()
	<-t.C
}

// finishLoad stops the load, settles the cluster and checks that every
// acknowledged message is on every replica (0 lost) and that the load made
// progress after the last step.
func finishLoad(t *testing.T, c *harness.Cluster, load *chaos.Load, ledger *chaos.Ledger, ackedBeforeLast int) {
	t.Helper()
	harness.CheckFor(t, stepTimeout, 100*time.Millisecond, func() error {
		if n := ledger.AckCount(); n < ackedBeforeLast+20 {
			return fmt.Errorf("%d acks since the last step, want 20", n-ackedBeforeLast)
		}
		return nil
	})
	load.Stop()
	admins := map[string]*adminapi.Client{}
	for _, nd := range c.Running() {
		admins[nd.ID()] = nd.Admin()
	}
	r := c.Options().ReplicationFactor
	if _, err := chaos.Settle(t.Context(), admins, r, 200*time.Millisecond, settleTimeout); err != nil {
		t.Fatal(err)
	}
	rep, err := chaos.Verify(t.Context(), admins, apps.DevAppID, load.Conversations(), ledger.Acks(), r)
	if err != nil {
		t.Fatal(err)
	}
	attempts, acked, abandoned := ledger.Counts()
	t.Logf("ledger: %d attempts, %d acknowledged, %d abandoned, errors %v; lost %d, missing on a replica %d",
		attempts, acked, abandoned, ledger.Errors(), rep.Lost, rep.Missing)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Lost != 0 || acked == 0 {
		t.Fatalf("lost %d of %d acknowledged messages", rep.Lost, acked)
	}
}

// TestSecurityGossipKeyRotationUnderLoad rotates the gossip key the
// documented way (append the new key, make it primary, remove the old
// one), waiting for every node to report each step, while senders write;
// the roster must stay whole and no acknowledged message may be lost.
func TestSecurityGossipKeyRotationUnderLoad(t *testing.T) {
	c, cr := startSecure(t, 3, harness.Options{})
	load, ledger := underLoad(t, c)
	old := cr.keys[0]
	next := newKey(t)
	fo, fn := membership.KeyFingerprint(old), membership.KeyFingerprint(next)
	for _, step := range []struct {
		name string
		keys [][]byte
		want []string
	}{
		{"install the new key", [][]byte{old, next}, []string{fo, fn}},
		{"make it primary", [][]byte{next, old}, []string{fn, fo}},
		{"remove the old key", [][]byte{next}, []string{fn}},
	} {
		pause()
		cr.writeKeyring(step.keys...)
		waitAll(t, c, step.name, func(st adminapi.NodeStatus) error {
			if !slices.Equal(st.GossipKeys, step.want) {
				return fmt.Errorf("gossip keys %v, want %v", st.GossipKeys, step.want)
			}
			return nil
		})
	}
	last := ledger.AckCount()
	// Gossip with the new key alone: the roster stays whole for several
	// push/pull rounds.
	expectRoster(t, c, allActive(c))
	finishLoad(t, c, load, ledger, last)
}

// TestSecurityCertRotationUnderLoad rotates the cluster CA under load: a new
// CA is appended to every node's CA file, every node gets a certificate of
// the new CA, then the old CA is removed. A node restarted afterwards (every
// connection of it new, so every handshake uses the new files only) rejoins,
// and no acknowledged message is lost.
func TestSecurityCertRotationUnderLoad(t *testing.T) {
	c, cr := startSecure(t, 3, harness.Options{})
	load, ledger := underLoad(t, c)

	pause()
	cr.addCA(cr.newCA("test cluster CA 2"))
	waitAll(t, c, "trust both CAs", func(st adminapi.NodeStatus) error {
		if len(st.PeerCAs) != 2 {
			return fmt.Errorf("peer CAs %v, want 2", st.PeerCAs)
		}
		return nil
	})

	pause()
	before := map[string]time.Time{}
	for _, nd := range c.Running() {
		st, err := nd.Admin().Node(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		before[nd.ID()] = st.PeerCertNotAfter
	}
	time.Sleep(1100 * time.Millisecond) // certificate times have one-second resolution: make the new NotAfter differ
	for _, nd := range c.Running() {
		cr.issue(nd.ID())
	}
	for _, nd := range c.Running() {
		harness.CheckFor(t, stepTimeout, 100*time.Millisecond, func() error {
			st, err := nd.Admin().Node(t.Context())
			if err != nil {
				return err
			}
			if !st.PeerCertNotAfter.After(before[nd.ID()]) {
				return fmt.Errorf("%s still presents the certificate expiring %v", nd.ID(), st.PeerCertNotAfter)
			}
			return nil
		})
	}

	pause()
	newCA := cr.dropOldestCA()
	waitAll(t, c, "trust the new CA only", func(st adminapi.NodeStatus) error {
		if len(st.PeerCAs) != 1 || st.PeerCAs[0] != newCA {
			return fmt.Errorf("peer CAs %v, want [%s]", st.PeerCAs, newCA)
		}
		return nil
	})

	pause()
	c.Node(1).Restart(t)
	c.WaitConverged(t)
	last := ledger.AckCount()
	if st, err := c.Node(1).Admin().Node(t.Context()); err != nil || !strings.EqualFold(fmt.Sprint(st.PeerCAs), fmt.Sprint([]string{newCA})) {
		t.Fatalf("restarted node: %+v, %v", st, err)
	}
	finishLoad(t, c, load, ledger, last)
}
