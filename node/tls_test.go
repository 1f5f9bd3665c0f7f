package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imnode test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestNodeTLSClientPort(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	n := startNode(t, func(c *node.Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test certificate
	c := &rawConn{t: t, sub: protocol.SubprotocolBinary, frames: make(chan received, 8), closed: make(chan error, 1)}
	ws, _, err := gws.NewClient(rawHandler{c}, &gws.ClientOption{
		Addr: "wss://" + n.ClientAddr().String(), TlsConfig: insecure,
		RequestHeader: http.Header{"Sec-WebSocket-Protocol": []string{protocol.SubprotocolBinary}},
	})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	c.ws = ws
	go ws.ReadLoop()
	t.Cleanup(func() { _ = ws.NetConn().Close() })
	c.send(&pb.GenericCommand{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(1)})
	if r := c.recv(); r.GetCmd() != pb.CommandType_echo {
		t.Fatalf("echo over wss: %v", r)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}}
	resp, err := hc.Get("https://" + n.ClientAddr().String() + "/v1/route?appId=imcluster-dev")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("https route: %d", resp.StatusCode)
	}
}
