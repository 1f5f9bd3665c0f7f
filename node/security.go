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
	"github.com/imcluster/imcluster/node/transport"
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

// Reasons authorizePeer refuses a peer, labelling the transport's
// imnode_transport_peer_refusals_total.
const (
	refuseNotStarted = "not_started" // this node has no roster yet
	refuseUnknown    = "unknown"     // not in the roster: not yet known, or left and pruned
	refuseLeft       = "left"        // in the roster as left or removed
)

// peerRefusalError is authorizePeer's refusal of one peer, matching
// errPeerNotMember; its reason labels the transport's refusal counter.
type peerRefusalError struct {
	peer, reason string
}

func (e *peerRefusalError) Error() string {
	return fmt.Sprintf("%v: %s (%s)", errPeerNotMember, e.peer, e.reason)
}

func (e *peerRefusalError) Unwrap() error { return errPeerNotMember }

// RefusalReason implements transport.RefusalReason.
func (e *peerRefusalError) RefusalReason() string { return e.reason }

var _ transport.RefusalReason = (*peerRefusalError)(nil)

// authorizePeer is the peer transport's authorization hook: a peer (whose
// id the TLS handshake proved) may talk to this node while the roster
// holds it in a state other than left. A node that left or was removed
// keeps a valid certificate but is refused here. The transport counts
// every refusal by reason and logs each peer at most every 30 s.
//
// A peer the roster does not hold is refused too, although it may merely
// be joining (gossip brings it within milliseconds): the roster prunes
// left nodes (membership.Config.LeftRetention), so an unknown id may as
// well be a removed node's, and its messages (commit notices, pushes,
// session events) would act on shards and sessions it no longer holds;
// with TLS its certificate stays valid, so the roster is the only thing
// that tells the two apart. The cost is bounded and visible: a joining
// node's requests get a retryable error, and its messages in the
// milliseconds before gossip reaches this node are dropped and counted
// (reason "unknown").
func (n *Node) authorizePeer(id string) error {
	if n.cluster == nil {
		return &peerRefusalError{peer: id, reason: refuseNotStarted}
	}
	return authorizeMember(n.cluster.Snapshot(), id)
}

// authorizeMember judges peer id against roster snap (see authorizePeer).
func authorizeMember(snap *membership.Snapshot, id string) error {
	m, ok := snap.Member(id)
	switch {
	case !ok:
		return &peerRefusalError{peer: id, reason: refuseUnknown}
	case m.State == ring.StateLeft:
		return &peerRefusalError{peer: id, reason: refuseLeft}
	}
	return nil
}
