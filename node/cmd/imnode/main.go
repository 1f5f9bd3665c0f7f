// Command imnode runs one imcluster chat node. Flags may also be given as
// environment variables: --data-dir as IMNODE_DATA_DIR, and so on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imcluster/imcluster/node"
	"github.com/imcluster/imcluster/node/apps"
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "imnode:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg       node.Config
		appsFile  string
		devApp    bool
		addrFile  string
		logLevel  string
		logFormat string
		version   bool
		cluster   clusterFlags
		tlsCert   string
		tlsKey    string
		config    string
		security  securityFlags
	)
	fs := flag.NewFlagSet("imnode", flag.ContinueOnError)
	fs.StringVar(&cfg.NodeID, "node-id", "", "stable node id (default imnode-0)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the node's database (required)")
	mibFlag(fs, "store-read-cache-mib", "MiB of hot records the store keeps in memory, coherent with every write (default 32, 0: off)", &cfg.StoreReadCacheSize)
	mibFlag(fs, "store-min-free-mib", "MiB the store keeps free on the data disk: below it the node refuses writes that add data (clients get \"storage full\"), serves reads and leaves coordinating to replicas with space, until free space is back above it plus a quarter; room for the store's own flushes and compactions and for an operator to act (default: 1% of the disk, at least 64 and at most 1024; 0: off)", &cfg.StoreMinFreeBytes)
	mibFlag(fs, "store-dedup-filter-mib", "MiB of filters that let the store answer a message's new dt without a database look-up (default 64, 0: off)", &cfg.StoreDedupFilterSize)
	fs.StringVar(&cfg.ClientAddr, "client-addr", ":8080", "client listen address: WebSocket and REST")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", ":8081", "admin listen address: health, metrics, admin API")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token for /admin/v1/* (empty: no check, development only)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "WebSocket URL returned by /v1/route (default: derived from the request)")
	fs.Func("allowed-hosts", "host names,... the Host header may carry when --public-url is unset (default: any, only with --insecure; otherwise one of the two is required)", func(v string) error {
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				cfg.AllowedHosts = append(cfg.AllowedHosts, h)
			}
		}
		return nil
	})
	fs.IntVar(&cfg.Shards, "shards", 256, "shard count; fixed for the lifetime of the data")
	fs.DurationVar(&cfg.Retention, "retention", 180*24*time.Hour, "message retention")
	fs.DurationVar(&cfg.SessionTokenTTL, "session-token-ttl", 48*time.Hour, "session token lifetime")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 360*time.Second, "close client connections silent for this long")
	fs.DurationVar(&cfg.LoginTimeout, "login-timeout", 120*time.Second, "close connections that do not log in within this time")
	fs.DurationVar(&cfg.HTTPRequestTimeout, "http-request-timeout", 60*time.Second, "bound on reading one HTTP request on the client port (body included) and writing its answer")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", 120*time.Second, "close keep-alive HTTP connections idle for this long")
	fs.IntVar(&cfg.MaxConnectionsPerIP, "max-conns-per-ip", 2000, "open WebSocket connections per source address (negative: no limit)")
	fs.Float64Var(&cfg.ConnectionsPerSecondPerIP, "conn-rate-per-ip", 100, "new WebSocket connections per second per source address, bursts of 4x (negative: no limit)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 5*time.Second, "how long shutdown waits for clients to leave after goaway")
	fs.StringVar(&appsFile, "apps-file", "", `JSON file {"apps":[{"appId","appKey","masterKey",...}]}`)
	fs.BoolVar(&devApp, "dev-app", false, "serve the built-in development app (appId "+apps.DevAppID+"; public keys, no per-client rate limits; requires --insecure)")
	fs.StringVar(&addrFile, "addr-file", "", "write the bound addresses as JSON to this file once listening")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	fs.StringVar(&config, "config", "", "JSON configuration file (the operator's ConfigMap); command-line flags win over it")
	fs.StringVar(&tlsCert, "tls-cert-file", "", "serve the client port over TLS with this PEM certificate")
	fs.StringVar(&tlsKey, "tls-key-file", "", "PEM private key for --tls-cert-file")
	cluster.register(fs)
	security.register(fs)
	fs.Usage = func() { usage(fs) }
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "prestop":
			return prestop(os.Args[2:])
		case "import":
			return importCmd(os.Args[2:])
		case "upgrade-store":
			return upgradeStore(os.Args[2:])
		case "certs":
			return certs(os.Args[2:])
		}
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown subcommand or argument %q (imnode --help lists them)", fs.Arg(0))
	}
	if err := applyConfigFile(fs, config); err != nil {
		return err
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if err := cluster.apply(&cfg); err != nil {
		return err
	}
	if err := security.apply(&cfg, devApp); err != nil {
		return err
	}
	if (tlsCert == "") != (tlsKey == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	cfg.TLSCertFile, cfg.TLSKeyFile = tlsCert, tlsKey
	if version {
		fmt.Println(node.Version)
		return nil
	}
	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	if appsFile != "" {
		list, err := apps.LoadFile(appsFile)
		if err != nil {
			return err
		}
		cfg.Apps = append(cfg.Apps, list...)
	}
	if devApp {
		cfg.Apps = append(cfg.Apps, apps.Dev())
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	if addrFile != "" {
		if err := writeAddrFile(addrFile, n); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(shutdownCtx)
}

// usage prints the subcommands, the flags and their IMNODE_* variables.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	_, _ = fmt.Fprint(w, `Usage:
  imnode [flags]                    run a chat node
  imnode prestop [flags]            the pod's preStop hook: goaway to clients, wait (imnode prestop --help)
  imnode upgrade-store --data-dir D raise a stopped node's store to this build's format (imnode upgrade-store --help)
  imnode import [flags]             import a LeanCloud export into a running cluster (imnode import --help)
  imnode certs create-ca|create-node the cluster CA and node certificates outside Kubernetes (imnode certs --help)

A new data directory needs --bootstrap (the first node of a new cluster) or
--join (every other node); a node that has been a member of a cluster with
other nodes always needs --join.

Flags (each may also be set as an environment variable IMNODE_<NAME>, shown
after the flag; the command line wins over the environment, which wins over
--config):
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, u := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		_, _ = fmt.Fprintf(w, "%s  (%s)\n    \t%s", line, envName(f.Name), strings.ReplaceAll(u, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			_, _ = fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		_, _ = fmt.Fprintln(w)
	})
}

// envName is the environment variable of a flag: IMNODE_ and the name in
// upper case with - as _.
func envName(flagName string) string {
	return "IMNODE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from IMNODE_<NAME>.
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

// writeAddrFile atomically writes {"client": ..., "admin": ...}.
func writeAddrFile(path string, n *node.Node) error {
	data, err := json.Marshal(map[string]string{
		"client": n.ClientAddr().String(), "admin": n.AdminAddr().String(),
		"gossip": n.GossipAddr(), "transport": n.TransportAddr(),
	})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, path)
}

// mibFlag defines a flag of a size in MiB stored in *dst in bytes: 0 stores
// -1 (off), no flag leaves 0 (the default).
func mibFlag(fs *flag.FlagSet, name, usage string, dst *int64) {
	fs.Func(name, usage, func(v string) error {
		mib, err := strconv.ParseInt(v, 10, 32)
		switch {
		case err != nil || mib < 0:
			return fmt.Errorf("want a number of MiB (0 or more), got %q", v)
		case mib == 0:
			*dst = -1
		default:
			*dst = mib << 20
		}
		return nil
	})
}
