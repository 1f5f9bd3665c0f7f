// Command imbench is a load generator for imnode, and for Centrifugo to
// compare with: N clients over M WebSocket connections in one of three
// shapes, reporting acknowledged messages per second, deliveries per second
// and p50/p90/p99 send-to-ack and send-to-receive latency, human-readable
// and optionally as JSON. Memory is bounded: latencies go into fixed-size
// histograms, never sample slices.
//
// Shapes (--shape): pairs (1:1 conversations, every client sends at --rate
// msg/s), room (one chat room or channel of all clients, client 0 sends at
// --rate msg/s, the others receive) and idle (every client connected and
// logged in; reports the servers' resident memory per socket). --steps runs
// several rates in turn with the same clients and reports the highest that
// meets the SLO (--slo-acked of the offered messages acknowledged and
// received, send-to-receive p99 at most --slo-p99). With --pid (the server
// processes, on this machine) each step reports the servers' CPU time per
// message.
//
// Protocols (--protocol): leancloud (imnode; clients share --conns
// connections) and centrifugo (Centrifugo's JSON protocol, one connection per
// client, HS256 connection tokens signed with --centrifugo-secret; the URL is
// Centrifugo's ws://HOST:PORT/connection/websocket).
//
// `imbench compare [--baseline LABEL] FILE...` reads the JSON results of
// runs made with --label and --json and prints, per label, the 1:1
// throughput at the SLO, its p99, the server CPU per message, the room
// deliveries per second at the SLO and the memory per idle socket, with the
// ratios of every label to the baseline (`make bench-compare` ends with it).
//
// Several URLs (repeated --url, or --urls a,b,c) spread the connections and
// clients round-robin over the nodes so that the two clients of a pair sit on
// different nodes (see placement.go).
//
//	imbench --url ws://127.0.0.1:4000/ --clients 1000 --conns 100 --rate 1 --duration 30s
//	imbench --urls ws://127.0.0.1:4000/,ws://127.0.0.1:4002/,ws://127.0.0.1:4004/ --clients 1000 --conns 1000
//	imbench --url ws://127.0.0.1:4000/ --clients 1000 --conns 1000 --steps 1,2,3,4 --duration 10s --pid 1234
//	imbench --protocol centrifugo --url ws://127.0.0.1:8000/connection/websocket --shape room --steps 10,20
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
)

// urlList collects --url and --urls values: each may be repeated and
// comma-separated; the order of the URLs is the order given.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }

func (u *urlList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := url.Parse(s)
		if err != nil {
			return err
		}
		if (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			return fmt.Errorf("%q is not a ws:// or wss:// URL", s)
		}
		*u = append(*u, s)
	}
	return nil
}

func main() {
	cmd := mainErr
	if len(os.Args) > 1 && os.Args[1] == "compare" {
		cmd = func(args []string, out io.Writer) error { return compareMain(args[1:], out) }
	}
	if err := cmd(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imbench:", err)
		os.Exit(1)
	}
}

// options are the command line beyond the benchmark configuration.
type options struct {
	label   string
	jsonOut string
	verbose bool
}

// floatList is a comma-separated list of positive numbers.
type floatList []float64

func (f *floatList) String() string {
	s := make([]string, len(*f))
	for i, v := range *f {
		s[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func (f *floatList) Set(v string) error {
	*f = nil
	for s := range strings.SplitSeq(v, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || x <= 0 {
			return fmt.Errorf("%q is not a positive number", s)
		}
		*f = append(*f, x)
	}
	return nil
}

// intList collects repeated or comma-separated process ids.
type intList []int

func (l *intList) String() string { return fmt.Sprint(*l) }

func (l *intList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a process id", s)
		}
		*l = append(*l, n)
	}
	return nil
}

// parseFlags parses the command line into a configuration (without a
// logger).
func parseFlags(args []string, stderr io.Writer) (benchConfig, options, error) {
	fs := flag.NewFlagSet("imbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var urls urlList
	fs.Var(&urls, "url", "WebSocket URL of a node (repeat or comma-separate for several nodes; clients are spread round-robin)")
	fs.Var(&urls, "urls", "comma-separated WebSocket URLs of several nodes (same as repeated --url)")
	cfg := benchConfig{}
	fs.StringVar(&cfg.Protocol, "protocol", protoLeanCloud, "protocol: leancloud (imnode) or centrifugo")
	fs.StringVar(&cfg.Shape, "shape", shapePairs, "shape: pairs (1:1, every client sends), room (client 0 sends to all others) or idle (connect and log in only)")
	fs.StringVar(&cfg.AppID, "app", "imcluster-dev", "LeanCloud app id")
	base64 := fs.Bool("base64", false, "LeanCloud: use the lc.proto2base64.3 subprotocol (text frames)")
	fs.StringVar(&cfg.CentrifugoSecret, "centrifugo-secret", "imbench-secret", "Centrifugo: HMAC secret of the connection tokens (client.token.hmac_secret_key)")
	fs.IntVar(&cfg.Clients, "clients", 1000, "number of clients")
	fs.IntVar(&cfg.Conns, "conns", 100, "LeanCloud: number of WebSocket connections shared by the clients (Centrifugo: one per client)")
	rate := fs.Float64("rate", 1, "messages per second per sending client (one step; see --steps)")
	var steps floatList
	fs.Var(&steps, "steps", "comma-separated rates (messages per second per sending client) to run in turn with the same clients; overrides --rate")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured sending period of each step")
	fs.IntVar(&cfg.Size, "size", 100, "message content size in bytes")
	fs.IntVar(&cfg.Parallel, "parallel", 64, "concurrent logins and conversation creations during setup")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "max wait for in-flight pushes after a step's sending stops")
	fs.DurationVar(&cfg.Warmup, "warmup", 3*time.Second, "unmeasured sending at the first rate before the first step")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "idle shape: wait after setup before reading the servers' memory")
	fs.BoolVar(&cfg.KeepGoing, "keep-going", false, "run every step, also after one missed the SLO")
	fs.Float64Var(&cfg.SLO.MinAcked, "slo-acked", 0.99, "SLO: fraction of the offered messages that must be acknowledged and received")
	fs.DurationVar(&cfg.SLO.MaxP99, "slo-p99", 100*time.Millisecond, "SLO: highest send-to-receive p99")
	var pids intList
	fs.Var(&pids, "pid", "server process id on this machine (repeatable): report its CPU per message and, for idle, its memory per socket")
	var opts options
	fs.StringVar(&opts.label, "label", "", "name of the system under test, kept in the JSON result (for imbench compare)")
	fs.StringVar(&opts.jsonOut, "json", "", "also write the result as JSON to this file (- for stdout)")
	fs.BoolVar(&opts.verbose, "v", false, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(urls) == 0 {
		return cfg, opts, errors.New("at least one --url is required")
	}
	cfg.URLs, cfg.PIDs = urls, pids
	cfg.Rates = steps
	if len(cfg.Rates) == 0 {
		cfg.Rates = []float64{*rate}
	}
	cfg.Subprotocol = protocol.SubprotocolBinary
	if *base64 {
		cfg.Subprotocol = protocol.SubprotocolBase64
	}
	switch {
	case cfg.Protocol != protoLeanCloud && cfg.Protocol != protoCentrifugo:
		return cfg, opts, fmt.Errorf("--protocol must be %s or %s", protoLeanCloud, protoCentrifugo)
	case cfg.Shape != shapePairs && cfg.Shape != shapeRoom && cfg.Shape != shapeIdle:
		return cfg, opts, fmt.Errorf("--shape must be %s, %s or %s", shapePairs, shapeRoom, shapeIdle)
	case cfg.Clients < 2 || cfg.Conns < 1 || cfg.Parallel < 1 || cfg.Size < 0 || cfg.Duration <= 0:
		return cfg, opts, errors.New("need --clients >= 2, --conns >= 1, --parallel >= 1, --duration > 0")
	case len(cfg.Rates) > maxSteps || *rate <= 0:
		return cfg, opts, fmt.Errorf("need a --rate > 0 and at most %d --steps", maxSteps)
	case cfg.SLO.MinAcked < 0 || cfg.SLO.MinAcked > 1:
		return cfg, opts, errors.New("--slo-acked must be in [0, 1]")
	}
	if cfg.Conns > cfg.Clients || cfg.Protocol == protoCentrifugo {
		cfg.Conns = cfg.Clients
	}
	return cfg, opts, nil
}

func mainErr(args []string, out io.Writer) error {
	cfg, opts, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if opts.verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Label = opts.label
	if err := printResult(out, res); err != nil {
		return err
	}
	switch opts.jsonOut {
	case "":
	case "-":
		return writeJSON(out, res)
	default:
		f, err := os.Create(opts.jsonOut)
		if err != nil {
			return err
		}
		if err := writeJSON(f, res); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

func writeJSON(w io.Writer, res *result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func printResult(w io.Writer, r *result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "imbench: %s %s, %d clients over %d connections to %s\n", r.Protocol, r.Shape, r.Clients, r.Conns,
		strings.Join(r.URLs, ", "))
	if len(r.URLs) > 1 {
		fmt.Fprintf(&b, "  placement clients per URL %s, connections per URL %s, %d of %d pairs across URLs",
			joinInts(r.Placement.ClientsPerURL), joinInts(r.Placement.ConnsPerURL), r.Placement.CrossURLPairs, r.Placement.Pairs)
		if r.MisplacedConns > 0 {
			fmt.Fprintf(&b, ", %d connections fell back to another URL", r.MisplacedConns)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  setup %.1fs, %d-byte messages, %d receivers per message, dropped frames %d\n",
		r.SetupSeconds, r.MessageBytes, r.Receivers, r.DroppedFrames)
	if i := r.Idle; i != nil {
		fmt.Fprintf(&b, "  idle: %d sockets, server RSS %d KiB before, %d KiB after: %.1f KiB per socket\n",
			i.Sockets, i.RSSBeforeKiB, i.RSSAfterKiB, i.RSSPerSocketKB)
	}
	for n, s := range r.Steps {
		fmt.Fprintf(&b, "  step %d: offered %.0f msg/s (%.4g per sender), %.1fs\n", n+1, s.OfferedPerSecond, s.RatePerClient, s.DurationSeconds)
		fmt.Fprintf(&b, "    sent %d  acked %d  received %d of %d  errors %d\n", s.Sent, s.Acked, s.Received, s.ExpectedReceived, sum(s.Errors))
		fmt.Fprintf(&b, "    acked %.1f msg/s  delivered %.1f/s", s.AckedPerSecond, s.DeliveredPerSec)
		if s.ServerCPUSeconds > 0 {
			fmt.Fprintf(&b, "  server cpu %.2fs (%.3f ms, %.1f context switches per message)", s.ServerCPUSeconds,
				s.ServerCPUPerMessageMs, s.ServerCtxSwitchesPerMessage)
		}
		b.WriteString("\n")
		for _, l := range []struct {
			name string
			l    latency
		}{{"send->ack", s.SendToAck}, {"send->recv", s.SendToReceive}} {
			fmt.Fprintf(&b, "    %-10s p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  mean %.2fms  (n=%d)\n",
				l.name, l.l.P50Ms, l.l.P90Ms, l.l.P99Ms, l.l.MaxMs, l.l.MeanMs, l.l.Count)
		}
		for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
			fmt.Fprintf(&b, "    error %-40s %d\n", k, s.Errors[k])
		}
		if s.MeetsSLO {
			b.WriteString("    meets the SLO\n")
		} else {
			fmt.Fprintf(&b, "    misses the SLO: %s\n", s.Miss)
		}
	}
	if len(r.Steps) > 0 {
		if r.Best < 0 {
			fmt.Fprintf(&b, "  no step met the SLO (>= %.0f%% acked and received, send->recv p99 <= %v)\n", 100*r.SLO.MinAcked, r.SLO.MaxP99)
		} else {
			s := r.Steps[r.Best]
			fmt.Fprintf(&b, "  best step at the SLO: %d, %.0f msg/s acked, %.0f deliveries/s, p99 %.2fms\n",
				r.Best+1, s.AckedPerSecond, s.DeliveredPerSec, s.SendToReceive.P99Ms)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "/")
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
