package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/pki"
)

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// writeCreds writes ca.pem (the given CAs), node.pem and node-key.pem for id
// issued by issuer into dir.
func writeCreds(t testing.TB, dir string, issuer *pki.CA, id string, trusted ...*pki.CA) (caFile, certFile, keyFile string) {
	t.Helper()
	cert, key, err := issuer.IssueNode(id, pki.NodeOptions{DNSNames: []string{id + ".peers"}})
	if err != nil {
		t.Fatal(err)
	}
	var bundle []byte
	for _, c := range trusted {
		bundle = append(bundle, c.CertPEM()...)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	for name, b := range map[string][]byte{caFile: bundle, certFile: cert, keyFile: key} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

func TestPKIIssueAndParse(t *testing.T) {
	ca := newCA(t, "test CA")
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := pki.ParseCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := back.IssueNode("imnode-2", pki.NodeOptions{DNSNames: []string{"imnode-2.x-peers"}})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		id, err := pki.Verify(certs, roots, usage, time.Now())
		if err != nil || id != "imnode-2" {
			t.Fatalf("Verify(%v) = %q, %v; want imnode-2", usage, id, err)
		}
	}
	if got := certs[0].DNSNames; len(got) != 1 || got[0] != "imnode-2.x-peers" {
		t.Fatalf("DNS names %v", got)
	}
	other := newCA(t, "other CA")
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)
	if _, err := pki.Verify(certs, otherRoots, x509.ExtKeyUsageServerAuth, time.Now()); err == nil {
		t.Fatal("a certificate of another CA verified")
	}
	if _, err := pki.NodeID(ca.Cert); !errors.Is(err, pki.ErrNotNodeCert) {
		t.Fatalf("NodeID(CA) = %v, want ErrNotNodeCert", err)
	}
	if _, err := pki.ParseCertificates([]byte("junk")); !errors.Is(err, pki.ErrNoCertificate) {
		t.Fatalf("ParseCertificates(junk) = %v", err)
	}
	if _, err := pki.ParseCA(other.CertPEM(), keyPEM); err == nil {
		t.Fatal("ParseCA accepted a key of another CA")
	}
}

// handshake runs a TLS handshake between a client and a server config over
// a pipe and returns the client's and the server's error.
func handshake(client, server *tls.Config) (clientErr, serverErr error) {
	c, s := net.Pipe()
	defer func() { _ = c.Close() }()
	defer func() { _ = s.Close() }()
	done := make(chan error, 1)
	go func() {
		sc := tls.Server(s, server)
		err := sc.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of a refused client
			// certificate on its first read.
			_, err = sc.Write([]byte{1})
		}
		_ = s.Close()
		done <- err
	}()
	cc := tls.Client(c, client)
	clientErr = cc.Handshake()
	if clientErr == nil {
		_, clientErr = cc.Read(make([]byte, 1))
	}
	_ = c.Close()
	return clientErr, <-done
}

func TestPKIFilesHandshakeAndReload(t *testing.T) {
	ca := newCA(t, "cluster CA")
	a, err := pki.LoadFiles(writeCreds(t, t.TempDir(), ca, "imnode-0", ca))
	if err != nil {
		t.Fatal(err)
	}
	bDir := t.TempDir()
	b, err := pki.LoadFiles(writeCreds(t, bDir, ca, "imnode-1", ca))
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeID() != "imnode-0" || b.NodeID() != "imnode-1" {
		t.Fatalf("node ids %q %q", a.NodeID(), b.NodeID())
	}
	if ce, se := handshake(a.ClientConfig(), b.ServerConfig()); ce != nil || se != nil {
		t.Fatalf("same CA: client %v, server %v", ce, se)
	}

	// An impostor with its own CA is refused both ways.
	rogue := newCA(t, "rogue CA")
	r, err := pki.LoadFiles(writeCreds(t, t.TempDir(), rogue, "imnode-1", rogue))
	if err != nil {
		t.Fatal(err)
	}
	if _, se := handshake(r.ClientConfig(), b.ServerConfig()); se == nil {
		t.Fatal("server accepted a client certificate of another CA")
	}
	if ce, _ := handshake(a.ClientConfig(), r.ServerConfig()); ce == nil {
		t.Fatal("client accepted a server certificate of another CA")
	}

	// Rotation: b trusts both CAs and gets a certificate of the new one;
	// a (old CA only) refuses it until it trusts the new CA too.
	next := newCA(t, "next CA")
	writeCreds(t, bDir, next, "imnode-1", ca, next)
	if changed, err := b.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want changed", changed, err)
	}
	if changed, err := b.Reload(); err != nil || changed {
		t.Fatalf("second Reload = %v, %v; want unchanged", changed, err)
	}
	if ce, _ := handshake(a.ClientConfig(), b.ServerConfig()); ce == nil {
		t.Fatal("a trusted a certificate of a CA it does not have")
	}
	if _, se := handshake(b.ClientConfig(), b.ServerConfig()); se != nil {
		t.Fatalf("b refused its own new certificate: %v", se)
	}

	// A half-written update keeps the previous credentials.
	if err := os.WriteFile(filepath.Join(bDir, "node-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reload(); err == nil {
		t.Fatal("Reload accepted a broken key")
	}
	if b.NodeID() != "imnode-1" || len(b.CAFingerprints()) != 2 {
		t.Fatalf("after a failed reload: %q %v", b.NodeID(), b.CAFingerprints())
	}
}

func TestPKILoadFilesRefusesForeignCertificate(t *testing.T) {
	ca, other := newCA(t, "a"), newCA(t, "b")
	if _, err := pki.LoadFiles(writeCreds(t, t.TempDir(), other, "imnode-0", ca)); err == nil {
		t.Fatal("LoadFiles accepted a certificate not signed by the CA file")
	}
}
