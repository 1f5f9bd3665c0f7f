package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imcluster/imcluster/node/pki"
)

// certs implements `imnode certs create-ca|create-node`: the cluster CA and
// node certificates for clusters outside Kubernetes (the operator issues
// them itself), like `cockroach cert`.
func certs(args []string) error {
	const usage = `usage: imnode certs create-ca|create-node [flags] (imnode certs create-ca --help; see docs/security.md)
  create-ca    write ca.crt and ca.key (the cluster CA) into --certs-dir
  create-node  write <node-id>.crt and <node-id>.key signed by the CA in --certs-dir`
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	case "create-ca":
		return createCA(args[1:])
	case "create-node":
		return createNode(args[1:])
	}
	return fmt.Errorf("imnode certs: unknown command %q: want create-ca or create-node", args[0])
}

func createCA(args []string) error {
	fs := flag.NewFlagSet("imnode certs create-ca", flag.ContinueOnError)
	dir := fs.String("certs-dir", "certs", "directory to write ca.crt and ca.key into")
	name := fs.String("name", "imcluster CA", "CA certificate common name")
	validity := fs.Duration("validity", pki.DefaultCAValidity, "CA lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ca, err := pki.NewCA(*name, *validity)
	if err != nil {
		return err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(*dir, "ca.key"), key, 0o600); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(*dir, "ca.crt"), ca.CertPEM(), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key"))
	return nil
}

func createNode(args []string) error {
	fs := flag.NewFlagSet("imnode certs create-node", flag.ContinueOnError)
	dir := fs.String("certs-dir", "certs", "directory holding ca.crt and ca.key; <node-id>.crt and <node-id>.key are written there")
	id := fs.String("node-id", "", "node id the certificate names (its CommonName; required)")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IPs to add as subject alternative names")
	validity := fs.Duration("validity", pki.DefaultNodeValidity, "certificate lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("imnode certs create-node: --node-id is required")
	}
	certPEM, err := os.ReadFile(filepath.Join(*dir, "ca.crt"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(*dir, "ca.key"))
	if err != nil {
		return err
	}
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		return err
	}
	opts := pki.NodeOptions{Validity: *validity}
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			opts.IPs = append(opts.IPs, ip)
		} else {
			opts.DNSNames = append(opts.DNSNames, h)
		}
	}
	cert, key, err := ca.IssueNode(*id, opts)
	if err != nil {
		return err
	}
	base := filepath.Join(*dir, *id)
	if err := writeNew(base+".key", key, 0o600); err != nil {
		return err
	}
	if err := writeNew(base+".crt", cert, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s.crt and %s.key (valid until %s)\n", base, base, time.Now().Add(*validity).UTC().Format(time.RFC3339))
	return nil
}

// writeNew writes a file that must not exist yet (never overwrite a key).
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode) //nolint:gosec // the user names the output directory
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
