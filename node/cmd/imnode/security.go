package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/imcluster/imcluster/node"
)

// securityFlags are the cluster credentials (docs/security.md).
type securityFlags struct {
	insecure       bool
	peerCA         string
	peerCert       string
	peerKey        string
	gossipKeyring  string
	adminTokenFile string
	backupDir      string
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&s.insecure, "insecure", false, "run without cluster credentials (peer TLS, gossip keyring, admin token): development and tests on one machine only; logs a warning at every start")
	fs.StringVar(&s.peerCA, "peer-ca-file", "", "PEM file of the cluster CA certificate(s) the peer transport trusts; re-read on change")
	fs.StringVar(&s.peerCert, "peer-cert-file", "", "PEM certificate of this node for the peer transport (CommonName = node id); re-read on change")
	fs.StringVar(&s.peerKey, "peer-key-file", "", "PEM private key of --peer-cert-file; re-read on change")
	fs.StringVar(&s.gossipKeyring, "gossip-keyring-file", "", "gossip encryption keys, one base64 AES key (16, 24 or 32 bytes) per line, the first one primary; re-read on change")
	fs.StringVar(&s.adminTokenFile, "admin-token-file", "", "file holding the admin bearer token (instead of --admin-token)")
	fs.StringVar(&s.backupDir, "backup-dir", "", "directory POST /admin/v1/backup writes below (empty: backups refused)")
}

// apply validates the security flags and copies them into cfg; devApp is
// whether --dev-app was given.
func (s *securityFlags) apply(cfg *node.Config, devApp bool) error {
	if devApp && !s.insecure {
		return errors.New("--dev-app requires --insecure (the development app's keys are public)")
	}
	if s.adminTokenFile != "" {
		if cfg.AdminToken != "" {
			return errors.New("--admin-token and --admin-token-file are exclusive")
		}
		b, err := os.ReadFile(s.adminTokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		cfg.AdminToken = strings.TrimSpace(string(b))
		if cfg.AdminToken == "" {
			return fmt.Errorf("--admin-token-file %s is empty", s.adminTokenFile)
		}
	}
	cfg.Insecure = s.insecure
	cfg.PeerCAFile, cfg.PeerCertFile, cfg.PeerKeyFile = s.peerCA, s.peerCert, s.peerKey
	cfg.GossipKeyringFile = s.gossipKeyring
	cfg.BackupDir = s.backupDir
	return nil
}
