package abuse_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(floodChildEnv); spec != "" {
		os.Exit(floodChild(spec)) // BenchmarkAbuseQueryFlood's flooder process
	}
	os.Exit(harness.Main(m))
}

// rssBytes reads the resident set size of process pid.
func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestAbuseBogusUploadsDoNotCostMemory: 200 concurrent uploads with a bogus
// token, each sending a 3 MiB body (the size limit), are all refused (403)
// and the node's RSS stays under 200 MB. Before the token was checked
// first, the node read every body into memory: 100 such uploads of 10 MiB
// took it to 2.3 GB.
func TestAbuseBogusUploadsDoNotCostMemory(t *testing.T) {
	const (
		uploads = 200
		body    = 3 << 20
		bound   = 200 << 20
	)
	c := harness.Start(t, 1, harness.Options{})
	nd := c.Node(0)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
	)
	stop := make(chan struct{})
	peak := int64(0)
	var sampleErr error
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			rss, err := rssBytes(nd.PID())
			if err != nil {
				sampleErr = err
				return
			}
			peak = max(peak, rss)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	for i := range uploads {
		wg.Go(func() {
			conn, err := net.Dial("tcp", nd.ClientAddr())
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
			_, _ = fmt.Fprintf(conn, "PUT /1.1/fileUpload/%024d?app=imcluster-dev&token=bogus HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", i, body)
			go func() { // the body, until the node stops reading
				for sent := 0; sent < body; sent += len(chunk) {
					if _, err := conn.Write(chunk); err != nil {
						return
					}
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			code := 0
			if err == nil {
				code = resp.StatusCode
				_ = resp.Body.Close()
			}
			mu.Lock()
			status[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	if sampleErr != nil {
		t.Fatal(sampleErr)
	}
	if status[http.StatusForbidden] != uploads {
		t.Fatalf("answers %v, want %d x 403", status, uploads)
	}
	t.Logf("peak RSS %.1f MB during %d bogus %d-byte uploads", float64(peak)/(1<<20), uploads, body)
	if peak > bound {
		t.Fatalf("peak RSS %d MB, bound %d MB", peak>>20, bound>>20)
	}
}
