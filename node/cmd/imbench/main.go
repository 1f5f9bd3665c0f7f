// Command imbench is a load generator for imnode: N clients over M
// WebSocket connections, paired into 1:1 conversations, each sending at a
// fixed rate for a duration. It reports acknowledged messages per second and
// p50/p90/p99 send-to-ack and send-to-receive latency, human-readable and
// optionally as JSON. Memory is bounded: latencies go into fixed-size
// histograms, never sample slices.
//
// Several URLs (repeated --url, or --urls a,b,c) spread the connections and
// clients round-robin over the nodes so that the two clients of a pair sit on
// different nodes (see placement.go).
//
//	imbench --url ws://127.0.0.1:4000/ --clients 1000 --conns 100 --rate 1 --duration 30s
//	imbench --urls ws://127.0.0.1:4000/,ws://127.0.0.1:4002/,ws://127.0.0.1:4004/ --clients 1000 --conns 1000
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
	if err := mainErr(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imbench:", err)
		os.Exit(1)
	}
}

// options are the command line beyond the benchmark configuration.
type options struct {
	jsonOut string
	verbose bool
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
	fs.StringVar(&cfg.AppID, "app", "imcluster-dev", "app id")
	base64 := fs.Bool("base64", false, "use the lc.proto2base64.3 subprotocol (text frames)")
	fs.IntVar(&cfg.Clients, "clients", 1000, "number of clients (paired into 1:1 conversations)")
	fs.IntVar(&cfg.Conns, "conns", 100, "number of WebSocket connections shared by the clients")
	fs.Float64Var(&cfg.Rate, "rate", 1, "messages per second per client")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured sending period")
	fs.IntVar(&cfg.Size, "size", 100, "message content size in bytes")
	fs.IntVar(&cfg.Parallel, "parallel", 64, "concurrent logins and conversation creations during setup")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "max wait for in-flight pushes after sending stops")
	var opts options
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
	cfg.URLs = urls
	cfg.Subprotocol = protocol.SubprotocolBinary
	if *base64 {
		cfg.Subprotocol = protocol.SubprotocolBase64
	}
	if cfg.Clients < 2 || cfg.Conns < 1 || cfg.Parallel < 1 || cfg.Size < 0 || cfg.Duration <= 0 {
		return cfg, opts, errors.New("need --clients >= 2, --conns >= 1, --parallel >= 1, --duration > 0")
	}
	if cfg.Conns > cfg.Clients {
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
	fmt.Fprintf(&b, "imbench: %d clients over %d connections to %s\n", r.Clients, r.Conns, strings.Join(r.URLs, ", "))
	if len(r.URLs) > 1 {
		fmt.Fprintf(&b, "  placement clients per URL %s, connections per URL %s, %d of %d pairs across URLs",
			joinInts(r.Placement.ClientsPerURL), joinInts(r.Placement.ConnsPerURL), r.Placement.CrossURLPairs, r.Placement.Pairs)
		if r.MisplacedConns > 0 {
			fmt.Fprintf(&b, ", %d connections fell back to another URL", r.MisplacedConns)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  offered   %.0f msg/s (%.2f/client), %d-byte messages, %.1fs measured (setup %.1fs)\n",
		r.OfferedPerSecond, r.RatePerClient, r.MessageBytes, r.DurationSeconds, r.SetupSeconds)
	fmt.Fprintf(&b, "  sent %d  acked %d  received %d  errors %d  dropped frames %d\n",
		r.Sent, r.Acked, r.Received, sum(r.Errors), r.DroppedFrames)
	fmt.Fprintf(&b, "  acked     %.1f msg/s\n", r.AckedPerSecond)
	for _, l := range []struct {
		name string
		l    latency
	}{{"send->ack", r.SendToAck}, {"send->recv", r.SendToReceive}} {
		fmt.Fprintf(&b, "  %-10s p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  mean %.2fms  (n=%d)\n",
			l.name, l.l.P50Ms, l.l.P90Ms, l.l.P99Ms, l.l.MaxMs, l.l.MeanMs, l.l.Count)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(&b, "  error %-40s %d\n", k, r.Errors[k])
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
