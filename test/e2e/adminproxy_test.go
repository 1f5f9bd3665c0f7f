//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/adminapi"
)

// adminProxy stands between the operator and one node's admin API, so the
// test knows the moment the operator started that node's drain and can
// stop it there: it forwards every request until a POST /admin/v1/drain is
// answered with success; from then on, until release, it answers every
// request 503 (the operator sees the node's admin API down, so it can
// neither see the drain end nor remove the node). After release it
// forwards again and counts the drains started.
type adminProxy struct {
	hosts        string // a hosts file that sends the node's pod names to the proxy
	drainStarted chan struct{}
	srv          *http.Server

	mu       sync.Mutex
	held     bool
	released bool
	// drainsAfterRelease counts POST /admin/v1/drain after release.
	drainsAfterRelease int
}

// startAdminProxy listens on the kubelet network's .2 address at the admin
// port and writes a copy of the pods' hosts file in which pod's DNS names
// point at it. The proxy forwards to the pod's own address. The copy is a
// snapshot (the kubelet does not rewrite it): an operator started with it
// sees later pod changes only for pod itself, which the scenario removes.
func (w *world) startAdminProxy(pod, podIP string) *adminProxy {
	base := w.kubelet.cfg.Net.To4()
	ip := net.IPv4(base[0], base[1], base[2], 2).String()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(imv1.DefaultAdminPort)))
	if err != nil {
		w.t.Fatalf("admin proxy: %v", err)
	}
	target, err := url.Parse(fmt.Sprintf("http://%s:%d", podIP, imv1.DefaultAdminPort))
	if err != nil {
		w.t.Fatal(err)
	}
	p := &adminProxy{hosts: filepath.Join(w.dir, "hosts-proxied"), drainStarted: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if isDrainStart(resp.Request) && resp.StatusCode < 300 {
			p.mu.Lock()
			if !p.released && !p.held {
				p.held = true // before the operator reads the answer: its next request is held
				close(p.drainStarted)
			}
			p.mu.Unlock()
		}
		return nil
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		held := p.held && !p.released
		if p.released && isDrainStart(r) {
			p.drainsAfterRelease++
		}
		p.mu.Unlock()
		if held {
			http.Error(rw, "held by the e2e test", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(rw, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	w.t.Cleanup(func() { _ = p.srv.Close() })

	// The pod's names as the operator uses them (DefaultAdminURL), with and
	// without the cluster domain; everything else as the kubelet wrote it.
	var b strings.Builder
	for line := range strings.Lines(w.kubelet.currentHosts()) {
		fields := strings.Fields(line)
		if len(fields) == 2 && strings.HasPrefix(fields[1], pod+".") {
			line = ip + "\t" + fields[1] + "\n"
		}
		b.WriteString(line)
	}
	if err := os.WriteFile(p.hosts, []byte(b.String()), 0o644); err != nil { //nolint:gosec // read by the operator's resolver
		w.t.Fatal(err)
	}
	return p
}

func isDrainStart(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == adminapi.PathDrain
}

// release lets requests through again; later drain starts are counted.
func (p *adminProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = true
}

func (p *adminProxy) drainsStartedAfterRelease() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drainsAfterRelease
}

// waitDrainStarted waits until the operator started the drain.
func (p *adminProxy) waitDrainStarted(timeout time.Duration) error {
	select {
	case <-p.drainStarted:
		return nil
	case <-time.After(timeout):
		return errors.New("the operator did not start the drain")
	}
}
