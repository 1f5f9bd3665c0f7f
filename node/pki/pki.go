package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity defaults, used by imnode certs and the operator.
const (
	// DefaultCAValidity is ten years: the CA is rotated by appending a new
	// one to the CA file, not by expiry.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeValidity is one year; the operator renews node
	// certificates well before expiry.
	DefaultNodeValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a node whose clock is slightly
	// behind the issuer's accepts a fresh certificate.
	clockSkew = 5 * time.Minute
	// maxNodeIDLen matches the peer transport's handshake limit.
	maxNodeIDLen = 255
)

// Errors returned by the parsing and checking functions.
var (
	// ErrNoCertificate: the PEM data holds no CERTIFICATE block.
	ErrNoCertificate = errors.New("pki: no certificate in PEM data")
	// ErrNoKey: the PEM data holds no private key block.
	ErrNoKey = errors.New("pki: no private key in PEM data")
	// ErrNotNodeCert: a certificate is not a usable node certificate.
	ErrNotNodeCert = errors.New("pki: not a node certificate")
)

// CA is a certificate authority: a certificate and its private key. It is
// immutable after creation and safe for concurrent use.
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
}

// NewCA creates a self-signed CA named commonName (e.g. "imcluster
// prod-a CA"), valid from now for validity (zero means DefaultCAValidity).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if validity == 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// ParseCA parses a CA from its PEM certificate and PEM private key (the
// first certificate in certPEM is the one that must match the key).
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !certs[0].IsCA {
		return nil, errors.New("pki: certificate is not a CA")
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, errors.New("pki: CA key does not match the CA certificate")
	}
	return &CA{Cert: certs[0], Key: key}, nil
}

// CertPEM returns the CA certificate as PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA private key as PEM ("EC PRIVATE KEY").
func (ca *CA) KeyPEM() ([]byte, error) {
	return keyPEM(ca.Key)
}

// NodeOptions are the optional parts of a node certificate.
type NodeOptions struct {
	// DNSNames are added as DNS subject alternative names (e.g. the pod's
	// stable name under the headless Service).
	DNSNames []string
	// IPs are added as IP subject alternative names.
	IPs []net.IP
	// Validity is the lifetime from now. Zero means DefaultNodeValidity.
	Validity time.Duration
}

// IssueNode issues a certificate for node id nodeID, signed by ca, with a
// new P-256 key. It returns the certificate and the key as PEM. The
// certificate's Subject CommonName is nodeID and it carries ExtKeyUsage
// ServerAuth and ClientAuth. It is never valid beyond the CA's NotAfter.
func (ca *CA) IssueNode(nodeID string, opts NodeOptions) (certPEM, keyPEMBytes []byte, err error) {
	if nodeID == "" || len(nodeID) > maxNodeIDLen {
		return nil, nil, fmt.Errorf("pki: node id must be 1..%d bytes", maxNodeIDLen)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultNodeValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate node key: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(opts.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     opts.DNSNames,
		IPAddresses:  opts.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create node certificate: %w", err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp, nil
}

// ParseCertificates parses every CERTIFICATE block of pemData, in order
// (a CA file may hold several CAs during a rotation). Other blocks are
// skipped; no certificate at all is ErrNoCertificate.
func ParseCertificates(pemData []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// ParseKey parses the first ECDSA private key of pemData ("EC PRIVATE
// KEY" or PKCS #8 "PRIVATE KEY").
func ParseKey(pemData []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			return nil, ErrNoKey
		}
		switch b.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("pki: parse key: %w", err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("pki: parse key: %w", err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("pki: key is %T, want ECDSA", k)
			}
			return ek, nil
		}
	}
}

// NodeID returns the node id a node certificate names (its Subject
// CommonName), after checking it is usable for both ends of a peer
// connection. It does not verify the signature; see Verify.
func NodeID(cert *x509.Certificate) (string, error) {
	id := cert.Subject.CommonName
	if id == "" || len(id) > maxNodeIDLen {
		return "", fmt.Errorf("%w: CommonName %q", ErrNotNodeCert, id)
	}
	if cert.IsCA {
		return "", fmt.Errorf("%w: %q is a CA", ErrNotNodeCert, id)
	}
	var server, client bool
	for _, u := range cert.ExtKeyUsage {
		server = server || u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny
		client = client || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}
	if !server || !client {
		return "", fmt.Errorf("%w: %q lacks ExtKeyUsage ServerAuth and ClientAuth", ErrNotNodeCert, id)
	}
	return id, nil
}

// Verify checks that chain[0] is a node certificate signed (through
// chain[1:] if any) by one of roots and valid at now, for usage
// (x509.ExtKeyUsageServerAuth or ClientAuth), and returns its node id.
func Verify(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("%w: no certificate presented", ErrNotNodeCert)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("pki: verify %q: %w", chain[0].Subject.CommonName, err)
	}
	return NodeID(chain[0])
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// serial returns a random 128-bit serial number (RFC 5280 allows up to 20
// octets; randomness keeps serials unique without a counter).
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("pki: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}
