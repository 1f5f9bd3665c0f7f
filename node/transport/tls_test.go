package transport

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/pki"
)

// testPKI issues node credentials from one CA into files.
type testPKI struct {
	tb  testing.TB
	ca  *pki.CA
	dir string
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	ca, err := pki.NewCA("transport test CA", 0)
	if err != nil {
		tb.Fatal(err)
	}
	return &testPKI{tb: tb, ca: ca, dir: tb.TempDir()}
}

// files issues a certificate naming id and returns it as a TLSSource.
func (p *testPKI) files(id string) *pki.Files {
	p.tb.Helper()
	cert, key, err := p.ca.IssueNode(id, pki.NodeOptions{})
	if err != nil {
		p.tb.Fatal(err)
	}
	dir, err := os.MkdirTemp(p.dir, id)
	if err != nil {
		p.tb.Fatal(err)
	}
	names := [3]string{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "key.pem")}
	for i, b := range [][]byte{p.ca.CertPEM(), cert, key} {
		if err := os.WriteFile(names[i], b, 0o600); err != nil {
			p.tb.Fatal(err)
		}
	}
	f, err := pki.LoadFiles(names[0], names[1], names[2])
	if err != nil {
		p.tb.Fatal(err)
	}
	return f
}

func withTLS(src TLSSource) func(*Config) {
	return func(c *Config) { c.TLS = src }
}

func TestTransportTLSMutualAuthentication(t *testing.T) {
	p := newTestPKI(t)
	book := newAddrBook()
	var mu sync.Mutex
	var from []string
	h := HandlerFuncs{Request: func(_ context.Context, req *Request) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		from = append(from, req.From)
		return []byte("ok"), nil
	}}
	a := startNode(t, book, "imnode-0", nil, withTLS(p.files("imnode-0")))
	startNode(t, book, "imnode-1", h, withTLS(p.files("imnode-1")))
	got, err := a.Call(context.Background(), "imnode-1", 1, []byte("x"))
	mu.Lock()
	defer mu.Unlock()
	if err != nil || string(got) != "ok" || len(from) != 1 || from[0] != "imnode-0" {
		t.Fatalf("call over mTLS = %q, %v (from %v)", got, err, from)
	}

	// A plain-TCP transport cannot talk to a TLS listener.
	plain := startNode(t, book, "imnode-2", nil, nil)
	if _, err := plain.Call(context.Background(), "imnode-1", 1, nil); err == nil {
		t.Fatal("a transport without TLS completed a call to a TLS listener")
	}
	// A certificate of another CA is refused both ways.
	rogue := newTestPKI(t)
	r := startNode(t, book, "imnode-3", echo("imnode-3"), withTLS(rogue.files("imnode-3")))
	if _, err := r.Call(context.Background(), "imnode-1", 1, nil); err == nil {
		t.Fatal("a certificate of another CA was accepted by the listener")
	}
	if _, err := a.Call(context.Background(), "imnode-3", 1, nil); err == nil {
		t.Fatal("the dialer accepted a listener certificate of another CA")
	}
	if len(from) != 1 {
		t.Fatalf("handler ran for refused peers: %v", from)
	}
}

func TestTransportTLSBindsNodeIDToCertificate(t *testing.T) {
	p := newTestPKI(t)
	book := newAddrBook()
	var ran atomic.Bool
	b := startNode(t, book, "imnode-1", HandlerFuncs{Request: func(context.Context, *Request) ([]byte, error) {
		ran.Store(true)
		return nil, nil
	}}, withTLS(p.files("imnode-1")))

	// imnode-2's valid certificate, but the Hello claims imnode-0.
	impostor := startNode(t, book, "imnode-0", nil, withTLS(p.files("imnode-2")))
	if _, err := impostor.Call(context.Background(), "imnode-1", 1, nil); err == nil || ran.Load() {
		t.Fatalf("a node acting under another's id: err %v, handler ran %v", err, ran.Load())
	}
	if b.Stats().TLSRejects == 0 {
		t.Fatal("the refusal was not counted")
	}

	// The dialer side: an address answering with another node's
	// certificate is not the peer we meant.
	book.set("imnode-5", b.Addr().String())
	a := startNode(t, book, "imnode-0", nil, withTLS(p.files("imnode-0")))
	if _, err := a.Call(context.Background(), "imnode-5", 1, nil); !errors.Is(err, ErrWrongPeer) {
		t.Fatalf("call to an address presenting imnode-1's certificate as imnode-5: %v, want ErrWrongPeer", err)
	}
}

func TestTransportAuthorizeRefusesRemovedPeers(t *testing.T) {
	book := newAddrBook()
	var handled, msgs atomic.Int32
	h := HandlerFuncs{
		Request: func(context.Context, *Request) ([]byte, error) { handled.Add(1); return nil, nil },
		Message: func(*Message) { msgs.Add(1) },
	}
	b := startNode(t, book, "b", h, func(c *Config) {
		c.Authorize = func(id string) error {
			if id != "a" {
				return errors.New("not a member")
			}
			return nil
		}
	})
	a := startNode(t, book, "a", nil, nil)
	x := startNode(t, book, "x", nil, nil)
	if _, err := a.Call(context.Background(), "b", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Send("b", 2, nil); err != nil {
		t.Fatal(err)
	}
	// x's message travels before x's call on the same connection, so it
	// was judged by the time the call is answered.
	if err := x.Send("b", 2, nil); err != nil {
		t.Fatal(err)
	}
	_, err := x.Call(context.Background(), "b", 1, nil)
	if re, ok := errors.AsType[*RemoteError](err); !ok || !re.Temporary || !strings.Contains(re.Message, "not a member") {
		t.Fatalf("call from a non-member: %v, want a retryable refusal", err)
	}
	if _, err := a.Call(context.Background(), "b", 1, nil); err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 2 || msgs.Load() != 1 || b.Stats().Unauthorized != 2 {
		t.Fatalf("handled %d requests (want 2) and %d messages (want 1), unauthorized %d (want 2)", handled.Load(), msgs.Load(), b.Stats().Unauthorized)
	}
}

// rawHello dials addr, completes the handshake as id and returns the
// connection (the caller closes it).
func rawHello(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(appendFrame(nil, &frame{typ: frameHello, version: protocolVersion, nodeID: id})); err != nil {
		t.Fatal(err)
	}
	ack, err := readFrame(bufio.NewReader(c), frameHelloMax)
	if err != nil || ack.status != statusOK {
		t.Fatalf("handshake: %v %v", ack, err)
	}
	return c
}

func TestTransportIdleConnectionsClosed(t *testing.T) {
	book := newAddrBook()
	const idle = 300 * time.Millisecond
	b := startNode(t, book, "b", echo("b"), func(c *Config) { c.IdleTimeout = idle })
	c := rawHello(t, b.Addr().String(), "silent")
	defer func() { _ = c.Close() }()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a silent peer's connection: read %v after %v, want closed after ~%v", err, time.Since(start), idle)
	}

	// A real dialer pings, so an idle but live connection survives. The
	// server closes after 3/4 to 1 IdleTimeout of silence and the dialer
	// pings every IdleTimeout/3, so the margin is 5/12 of it: a longer
	// timeout here keeps scheduling stalls of a loaded machine (seen: over
	// 125 ms with 300 ms) from passing for a missing ping.
	const liveIdle = 1500 * time.Millisecond
	startNode(t, book, "live", echo("live"), func(c *Config) { c.IdleTimeout = liveIdle })
	a := startNode(t, book, "a", nil, func(c *Config) { c.IdleTimeout = liveIdle })
	if _, err := a.Call(context.Background(), "live", 1, nil); err != nil {
		t.Fatal(err)
	}
	dials := a.Stats().Dials
	time.Sleep(2 * liveIdle) // idleness is the point of this test
	if _, err := a.Call(context.Background(), "live", 1, nil); err != nil || a.Stats().Dials != dials {
		t.Fatalf("after idling: err %v, dials %d -> %d (the pinged connection must survive)", err, dials, a.Stats().Dials)
	}
}

// A peer that announces a large frame and sends little makes the reader
// allocate what arrived, not what was announced.
func TestTransportFrameAllocationFollowsBytes(t *testing.T) {
	const announced = 4 << 20
	hdr := []byte{byte(announced >> 24), byte(announced >> 16 & 0xff), byte(announced >> 8 & 0xff), byte(announced & 0xff), frameMessage}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		r := bufio.NewReader(strings.NewReader(string(hdr) + "0123456789"))
		if _, err := readFrame(r, announced); err == nil {
			t.Fatal("a truncated frame decoded")
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*(initialFrameAlloc+8<<10) {
		t.Fatalf("10 truncated frames announcing %d bytes allocated %d bytes; want about 10 x %d", announced, got, initialFrameAlloc)
	}
	// A complete large frame still decodes.
	payload := strings.Repeat("x", 3<<20)
	b := appendFrame(nil, &frame{typ: frameMessage, method: 3, payload: []byte(payload)})
	f, err := readFrame(bufio.NewReader(strings.NewReader(string(b))), announced)
	if err != nil || string(f.payload) != payload {
		t.Fatalf("large frame: err %v, %d bytes", err, len(f.payload))
	}
}

var _ TLSSource = (*pki.Files)(nil)
