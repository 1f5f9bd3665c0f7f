package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files is a node's peer credentials on disk: a CA file (one or more PEM
// CA certificates; every one is trusted, which is how a CA rotation
// overlaps), a certificate file and its key file. It is safe for
// concurrent use: the TLS configurations it hands out always come from one
// consistent, validated set of the three files.
type Files struct {
	caFile, certFile, keyFile string
	now                       func() time.Time

	cur atomic.Pointer[material]

	// mu serializes Reload; it guards last.
	mu   sync.Mutex
	last [3][]byte // contents of the files cur was built from
}

// material is one validated set of credentials.
type material struct {
	cert   tls.Certificate
	roots  *x509.CertPool
	nodeID string
	cas    []*x509.Certificate
}

// LoadFiles reads and validates the three files: the certificate must be
// a node certificate (see NodeID) matching the key and signed by one of the
// CAs in caFile.
func LoadFiles(caFile, certFile, keyFile string) (*Files, error) {
	f := &Files{caFile: caFile, certFile: certFile, keyFile: keyFile, now: time.Now}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload re-reads the files and, when their contents changed and are
// valid, makes them the credentials of new handshakes. It reports whether
// they changed. On an error (a file missing, or the certificate and key
// written one after the other and not matching yet) the previous
// credentials stay in use and the error says why.
func (f *Files) Reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var data [3][]byte
	for i, name := range []string{f.caFile, f.certFile, f.keyFile} {
		b, err := os.ReadFile(name) //nolint:gosec // the operator or user chooses the credential files
		if err != nil {
			return false, fmt.Errorf("pki: read peer credentials: %w", err)
		}
		data[i] = b
	}
	if f.cur.Load() != nil && bytes.Equal(data[0], f.last[0]) && bytes.Equal(data[1], f.last[1]) && bytes.Equal(data[2], f.last[2]) {
		return false, nil
	}
	m, err := f.build(data)
	if err != nil {
		return false, err
	}
	f.cur.Store(m)
	f.last = data
	return true, nil
}

func (f *Files) build(data [3][]byte) (*material, error) {
	cas, err := ParseCertificates(data[0])
	if err != nil {
		return nil, fmt.Errorf("pki: CA file %s: %w", f.caFile, err)
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA {
			return nil, fmt.Errorf("pki: CA file %s: %q is not a CA certificate", f.caFile, c.Subject.CommonName)
		}
		roots.AddCert(c)
	}
	cert, err := tls.X509KeyPair(data[1], data[2])
	if err != nil {
		return nil, fmt.Errorf("pki: certificate %s and key %s: %w", f.certFile, f.keyFile, err)
	}
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: certificate %s: %w", f.certFile, err)
		}
		chain = append(chain, c)
	}
	id, err := Verify(chain, roots, x509.ExtKeyUsageClientAuth, f.now())
	if err != nil {
		return nil, fmt.Errorf("pki: certificate %s against CA file %s: %w", f.certFile, f.caFile, err)
	}
	cert.Leaf = chain[0]
	return &material{cert: cert, roots: roots, nodeID: id, cas: cas}, nil
}

// NodeID returns the node id the current certificate names.
func (f *Files) NodeID() string { return f.cur.Load().nodeID }

// NotAfter returns the expiry of the current certificate.
func (f *Files) NotAfter() time.Time { return f.cur.Load().cert.Leaf.NotAfter }

// CAFingerprints returns a short fingerprint (the first 8 bytes of the
// SHA-256 of the DER, in hex) of each trusted CA, in file order.
func (f *Files) CAFingerprints() []string {
	m := f.cur.Load()
	out := make([]string, len(m.cas))
	for i, c := range m.cas {
		sum := sha256.Sum256(c.Raw)
		out[i] = hex.EncodeToString(sum[:8])
	}
	return out
}

// ServerConfig returns a TLS 1.3 configuration for one accepted peer
// connection: it presents the current certificate and requires a client
// certificate that is a node certificate signed by a current CA. The
// caller binds the certificate's node id to the id the peer claims.
func (f *Files) ServerConfig() *tls.Config {
	m := f.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("pki: no client certificate")
			}
			_, err := NodeID(cs.PeerCertificates[0])
			return err
		},
	}
}

// ClientConfig returns a TLS 1.3 configuration for one dial to a peer: it
// presents the current certificate and accepts a server certificate that
// is a node certificate signed by a current CA. Host names are not
// checked (peers are dialed by pod IP); the caller checks that the
// certificate names the node it meant to reach.
func (f *Files) ClientConfig() *tls.Config {
	m := f.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		// The chain is verified in VerifyConnection against the cluster
		// CAs; only the host name check is skipped, replaced by the
		// node-id check of the caller.
		InsecureSkipVerify: true, //nolint:gosec // chain verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := Verify(cs.PeerCertificates, m.roots, x509.ExtKeyUsageServerAuth, f.now())
			return err
		},
	}
}
