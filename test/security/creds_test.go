package security_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/pki"
	"github.com/imcluster/imcluster/test/harness"
)

// adminToken is the secure clusters' admin token.
const adminToken = "security-test-token"

// creds are the credentials of one secure test cluster, as files in dir.
type creds struct {
	t   testing.TB
	dir string

	mu   sync.Mutex
	cas  []*pki.CA // trusted CAs, in CA-file order; cas[iss] signs new certificates
	iss  int
	keys [][]byte // gossip keys, primary first
}

func newCreds(t testing.TB) *creds {
	t.Helper()
	c := &creds{t: t, dir: t.TempDir()}
	c.cas = []*pki.CA{c.newCA("test cluster CA 1")}
	c.writeCAFile()
	c.writeKeyring(newKey(t))
	// The development app's keys, and its client rates off as --dev-app's
	// are: the rotation tests' load sends faster than a client may by
	// default.
	apps, err := json.Marshal(map[string]any{"apps": []map[string]any{{"appId": apps.DevAppID, "appKey": apps.DevAppKey, "masterKey": apps.DevMasterKey,
		"limits": map[string]any{"sendsPerMinutePerClient": -1}}}})
	if err != nil {
		t.Fatal(err)
	}
	c.write("apps.json", apps)
	if err := os.Mkdir(c.path("backups"), 0o700); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *creds) path(name string) string { return filepath.Join(c.dir, name) }

// write replaces a file atomically (as Kubernetes updates a Secret).
func (c *creds) write(name string, data []byte) {
	c.t.Helper()
	tmp := c.path(name + ".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path(name)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *creds) newCA(name string) *pki.CA {
	c.t.Helper()
	ca, err := pki.NewCA(name, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return ca
}

func (c *creds) writeCAFile() {
	var b []byte
	for _, ca := range c.cas {
		b = append(b, ca.CertPEM()...)
	}
	c.write("ca.pem", b)
}

// addCA appends ca to the CA file and makes it the issuer of new
// certificates.
func (c *creds) addCA(ca *pki.CA) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cas = append(c.cas, ca)
	c.iss = len(c.cas) - 1
	c.writeCAFile()
}

// dropOldestCA removes the first CA from the CA file and returns the
// fingerprint of the remaining first one (as the admin API reports it).
func (c *creds) dropOldestCA() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cas = c.cas[1:]
	c.iss = max(c.iss-1, 0)
	c.writeCAFile()
	sum := sha256.Sum256(c.cas[0].Cert.Raw)
	return hex.EncodeToString(sum[:8])
}

// issue writes id's certificate and key, signed by the current issuer, to
// <id>.pem and <id>-key.pem.
func (c *creds) issue(id string) {
	c.t.Helper()
	cert, key := issueBy(c.t, c.cas[c.iss], id)
	c.write(id+"-key.pem", key)
	c.write(id+".pem", cert)
}

func issueBy(t testing.TB, ca *pki.CA, id string) (cert, key []byte) {
	t.Helper()
	cert, key, err := ca.IssueNode(id, pki.NodeOptions{DNSNames: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func (c *creds) writeKeyring(keys ...[]byte) {
	c.keys = keys
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = base64.StdEncoding.EncodeToString(k)
	}
	c.write("keyring", []byte(strings.Join(lines, "\n")+"\n"))
}

// flags is harness.Options.Credentials: it issues the node's certificate
// on first use and returns its credential flags (no --insecure), with the
// host names clients use (a node without --insecure needs --public-url or
// --allowed-hosts).
func (c *creds) flags(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := os.Stat(c.path(id + ".pem")); err != nil {
		c.issue(id)
	}
	return []string{
		"--peer-ca-file", c.path("ca.pem"),
		"--peer-cert-file", c.path(id + ".pem"),
		"--peer-key-file", c.path(id + "-key.pem"),
		"--gossip-keyring-file", c.path("keyring"),
		"--apps-file", c.path("apps.json"),
		"--backup-dir", c.path("backups"),
		// Clients reach the nodes as 127.0.0.1:port (the harness binds
		// loopback): the names /v1/route and file URLs may carry.
		"--allowed-hosts", "127.0.0.1,localhost",
	}
}

// files loads id's current credentials as the transport's TLS source.
func (c *creds) files(id string) *pki.Files {
	c.t.Helper()
	f, err := pki.LoadFiles(c.path("ca.pem"), c.path(id+".pem"), c.path(id+"-key.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// startSecure starts n nodes with credentials.
func startSecure(t *testing.T, n int, opts harness.Options) (*harness.Cluster, *creds) {
	t.Helper()
	c := newCreds(t)
	opts.AdminToken = adminToken
	opts.Credentials = c.flags
	// --cluster-profile local (the harness's) polls the credential files
	// every second.
	return harness.Start(t, n, opts), c
}
