package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/pki"
	"github.com/imcluster/imcluster/node/ring"
)

// credentials are the node's cluster credentials, loaded by Start and
// re-read by watchCredentials (the only writer after Start; peer and
// keyring are themselves safe for concurrent use).
type credentials struct {
	// peer is the peer transport's TLS material; nil without TLS.
	peer *pki.Files
	// keyring encrypts gossip; nil without encryption.
	keyring *memberlist.Keyring
	// keyringData is the keyring file content last applied.
	keyringData []byte
	// lastErr is the last reload error logged, so a file that stays
	// broken is logged once, not at every poll.
	lastErr string
}

// loadCredentials reads the credential files named in the config.
func (n *Node) loadCredentials() error {
	if n.cfg.PeerCAFile != "" {
		f, err := pki.LoadFiles(n.cfg.PeerCAFile, n.cfg.PeerCertFile, n.cfg.PeerKeyFile)
		if err != nil {
			return fmt.Errorf("node: peer TLS: %w", err)
		}
		if f.NodeID() != n.cfg.NodeID {
			return fmt.Errorf("node: peer certificate %s names node %q, this node is %q", n.cfg.PeerCertFile, f.NodeID(), n.cfg.NodeID)
		}
		n.creds.peer = f
	}
	if n.cfg.GossipKeyringFile != "" {
		data, keys, err := readKeyring(n.cfg.GossipKeyringFile)
		if err != nil {
			return err
		}
		kr, err := membership.NewKeyring(keys)
		if err != nil {
			return fmt.Errorf("node: gossip keyring %s: %w", n.cfg.GossipKeyringFile, err)
		}
		n.creds.keyring, n.creds.keyringData = kr, data
	}
	return nil
}

func readKeyring(path string) ([]byte, [][]byte, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator or user chooses the keyring file
	if err != nil {
		return nil, nil, fmt.Errorf("node: gossip keyring: %w", err)
	}
	keys, err := membership.ParseKeyring(data)
	if err != nil {
		return nil, nil, fmt.Errorf("node: gossip keyring %s: %w", path, err)
	}
	return data, keys, nil
}

// warnInsecure logs, at every start, what runs without credentials.
func (n *Node) warnInsecure() {
	var open []string
	if n.creds.peer == nil {
		open = append(open, "peer transport without TLS (anyone reaching the transport port can read, write and delete data)")
	}
	if n.creds.keyring == nil {
		open = append(open, "gossip unencrypted (anyone reaching the gossip port can join or remove nodes)")
	}
	if n.cfg.AdminToken == "" {
		open = append(open, "admin API without token")
	}
	if len(open) > 0 {
		n.log.Warn("Running insecure: development only, see docs/security.md", "insecure", strings.Join(open, "; "))
	}
}

// watchCredentials re-reads the credential files every
// CredentialPollInterval until ctx ends: new peer certificates apply to
// new handshakes, keyring changes to memberlist at once.
func (n *Node) watchCredentials(ctx context.Context) {
	if n.creds.peer == nil && n.creds.keyring == nil {
		return
	}
	t := time.NewTicker(n.cfg.CredentialPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.reloadCredentials()
	}
}

// reloadCredentials checks the files once; errors keep the credentials in
// use and are logged once per distinct error.
func (n *Node) reloadCredentials() {
	var errs []error
	if p := n.creds.peer; p != nil {
		changed, err := p.Reload()
		switch {
		case err != nil:
			errs = append(errs, err)
		case p.NodeID() != n.cfg.NodeID:
			// Reload already switched: say so loudly; the peers will
			// refuse this node until the files are fixed.
			errs = append(errs, fmt.Errorf("peer certificate now names node %q, this node is %q", p.NodeID(), n.cfg.NodeID))
		case changed:
			n.log.Info("Reloaded peer TLS credentials", "cas", p.CAFingerprints(), "notAfter", p.NotAfter())
		}
	}
	if n.creds.keyring != nil {
		if err := n.reloadKeyring(); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		n.creds.lastErr = ""
		return
	}
	if msg := err.Error(); msg != n.creds.lastErr {
		n.creds.lastErr = msg
		n.log.Error("Reloading cluster credentials failed; keeping the current ones", "err", err)
	}
}

func (n *Node) reloadKeyring() error {
	data, err := os.ReadFile(n.cfg.GossipKeyringFile)
	if err != nil {
		return fmt.Errorf("node: gossip keyring: %w", err)
	}
	if bytes.Equal(data, n.creds.keyringData) {
		return nil
	}
	keys, err := membership.ParseKeyring(data)
	if err != nil {
		return fmt.Errorf("node: gossip keyring %s: %w", n.cfg.GossipKeyringFile, err)
	}
	if err := membership.ApplyKeyring(n.creds.keyring, keys); err != nil {
		return err
	}
	n.creds.keyringData = data
	n.log.Info("Applied gossip keyring", "keys", membership.KeyFingerprints(n.creds.keyring))
	return nil
}

// gossipKeys returns the fingerprints of the gossip keys, primary first;
// nil without a keyring.
func (n *Node) gossipKeys() []string {
	if n.creds.keyring == nil {
		return nil
	}
	return membership.KeyFingerprints(n.creds.keyring)
}

// errPeerNotMember refuses a peer that is not in the roster or has left.
var errPeerNotMember = errors.New("node: peer is not a cluster member")

// authorizePeer is the peer transport's authorization hook: a peer (whose
// id the TLS handshake proved) may talk to this node while the roster
// holds it in a state other than left. A node that left or was removed
// keeps a valid certificate but is refused here.
func (n *Node) authorizePeer(id string) error {
	if n.cluster == nil {
		return errPeerNotMember
	}
	m, ok := n.cluster.Snapshot().Member(id)
	if !ok || m.State == ring.StateLeft {
		return fmt.Errorf("%w: %s", errPeerNotMember, id)
	}
	return nil
}
