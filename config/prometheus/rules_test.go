package prometheus_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/config/prometheus"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// external are the metrics the rules and the dashboard take from other
// exporters, not from imnode: Prometheus' own up, the kubelet's volume
// statistics and the client_golang process collector. The operator's
// (imcluster_operator_*) are checked against the running operator binary by
// operator/cmd's TestOperatorBinary.
var external = map[string]bool{
	"up": true, "kubelet_volume_stats_available_bytes": true, "kubelet_volume_stats_capacity_bytes": true,
	"process_resident_memory_bytes": true,
}

// operatorMetric reports a metric the operator exports, not imnode.
func operatorMetric(m string) bool { return strings.HasPrefix(m, "imcluster_operator_") }

// metricRef finds metric names in a PromQL expression: identifiers of the
// exporters' prefixes (function names and labels never carry them).
var metricRef = regexp.MustCompile(`\b((?:imnode|imcluster|kubelet|process)_[a-z0-9_]+|up)\b`)

// TestMonitoringMetricsExist starts a real three-node cluster, sends a
// message so command histograms have a series, scrapes every node's
// /metrics, and fails if a metric named by an alerting rule or a dashboard
// panel is missing.
func TestMonitoringMetricsExist(t *testing.T) {
	wanted := map[string][]string{} // metric -> where it is used
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(prometheus.Rules, &rules); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			refs := metricRef.FindAllString(r.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("rule %s names no metric: %s", r.Alert, r.Expr)
			}
			for _, m := range refs {
				wanted[m] = append(wanted[m], "rule "+r.Alert)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "charts", "imcluster", "dashboards", "imcluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			refs := metricRef.FindAllString(tg.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("panel %q names no metric: %s", p.Title, tg.Expr)
			}
			for _, m := range refs {
				wanted[m] = append(wanted[m], "panel "+p.Title)
			}
		}
	}

	c := harness.Start(t, 3, harness.Options{})
	c.WaitConverged(t)
	sendOne(t, c)

	exported := map[string]bool{}
	for _, nd := range c.Nodes() {
		for m := range scrape(t, "http://"+nd.Addrs().Admin+"/metrics") {
			exported[m] = true
		}
	}
	var missing []string
	for m, uses := range wanted {
		if external[m] && m != "process_resident_memory_bytes" || operatorMetric(m) {
			continue
		}
		if !exported[m] {
			missing = append(missing, fmt.Sprintf("%s (used by %s)", m, strings.Join(slices.Compact(uses), ", ")))
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("not exported by imnode: %s", m)
	}
	for _, m := range []string{"imnode_build_info", "imnode_conversation_swept_total", "imnode_replica_sync_keys_remaining",
		"imnode_replica_sync_bytes_remaining", "imnode_replica_sync_buckets_total",
		"imnode_transport_messages_dropped_total", "imnode_transport_messages_held_total"} {
		if !exported[m] {
			t.Errorf("%s is not exported from the start", m)
		}
	}
	for m := range exported {
		if strings.HasPrefix(m, "imcluster_") {
			t.Errorf("%s: node metrics are named imnode_* (docs/monitoring.md has the renames)", m)
		}
	}
}

// sendOne logs two clients in and sends one message between them.
func sendOne(t *testing.T, c *harness.Cluster) {
	t.Helper()
	ctx := t.Context()
	cfg := client.DefaultConfig(apps.DevAppID, c.ClientURLs(c.Node(0))...)
	cfg.AppKey = apps.DevAppKey
	cfg.Server = c.Node(0).ServerURL()
	conn, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	cl, err := conn.Login(ctx, "metrics-a", client.LoginOptions{})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	harness.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		conv, err := cl.CreateConversation(ctx, client.CreateOptions{Members: []string{"metrics-b"}, Unique: true})
		if err != nil {
			return err
		}
		_, err = conv.Send(ctx, client.NewText("hello"))
		return err
	})
}

// scrape returns the metric names of a Prometheus text exposition, with the
// series suffixes (_bucket, _sum, _count) as they appear.
func scrape(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a test node on 127.0.0.1
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: HTTP %d", url, resp.StatusCode)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		out[name] = true
	}
	return out
}
