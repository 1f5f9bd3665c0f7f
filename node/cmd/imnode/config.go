package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/imcluster/imcluster/node"
)

// fileConfig is the JSON configuration file the operator renders into the
// node's ConfigMap (operator/internal/controller, nodeConfig). Every field
// maps to a flag; extra maps flag names to values.
type fileConfig struct {
	ClusterName       string            `json:"clusterName"`
	Shards            int               `json:"shards"`
	ReplicationFactor int               `json:"replicationFactor"`
	WriteQuorum       int               `json:"writeQuorum"`
	Retention         string            `json:"retention"`
	ClientPort        int               `json:"clientPort"`
	AdminPort         int               `json:"adminPort"`
	PeerPort          int               `json:"peerPort"`
	Join              string            `json:"join"`
	DataDir           string            `json:"dataDir"`
	AppsFile          string            `json:"appsFile"`
	TLSCertFile       string            `json:"tlsCertFile"`
	TLSKeyFile        string            `json:"tlsKeyFile"`
	ClusterID         string            `json:"clusterId"`
	Extra             map[string]string `json:"extra"`
}

// applyConfigFile sets every flag that the command line did not set from the
// file at path (no-op for an empty path).
func applyConfigFile(fs *flag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path) //nolint:gosec // the operator chooses the config file
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values := map[string]string{
		"cluster-name":       fc.ClusterName,
		"cluster-id":         fc.ClusterID,
		"retention":          fc.Retention,
		"join":               fc.Join,
		"data-dir":           fc.DataDir,
		"apps-file":          fc.AppsFile,
		"tls-cert-file":      fc.TLSCertFile,
		"tls-key-file":       fc.TLSKeyFile,
		"shards":             itoa(fc.Shards),
		"replication-factor": itoa(fc.ReplicationFactor),
		"write-quorum":       itoa(fc.WriteQuorum),
		"client-addr":        port(fc.ClientPort),
		"admin-addr":         port(fc.AdminPort),
		"peer-addr":          port(fc.PeerPort),
	}
	for name, v := range fc.Extra {
		if fs.Lookup(name) == nil {
			return fmt.Errorf("--config %s: extra: unknown setting %q (extra keys are imnode flag names)", path, name)
		}
		values[name] = v
	}
	for name, v := range values {
		if v == "" || set[name] {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, name, err)
		}
	}
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func port(n int) string {
	if n == 0 {
		return ""
	}
	return ":" + strconv.Itoa(n)
}

// clusterFlags are the multi-node settings.
type clusterFlags struct {
	name              string
	join              string
	peerAddr          string
	transportAddr     string
	advertiseHost     string
	replicationFactor int
	writeQuorum       int
	profile           string
	faultInjection    bool
	bootstrap         bool
	clockOffset       time.Duration
	diskFullAfter     time.Duration
	diskFreeMiB       int64
	bootstrapNode     string
	clusterID         string
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "cluster-name", "", "cluster name (informational)")
	fs.StringVar(&c.join, "join", "", "gossip addresses host:port,... of running nodes to join (required except with --bootstrap on a new data directory)")
	fs.BoolVar(&c.bootstrap, "bootstrap", false, "create a new cluster if the data directory is new (the first node only; ignored once the directory belongs to a cluster)")
	fs.StringVar(&c.bootstrapNode, "bootstrap-node", "", "act as --bootstrap when --node-id equals this (the operator names its first pod of a brand-new cluster)")
	fs.StringVar(&c.clusterID, "cluster-id", "", "the cluster's id: given to a new cluster at bootstrap (default: random), checked against the data directory and the cluster joined")
	fs.StringVar(&c.peerAddr, "peer-addr", ":7946", "gossip (membership) listen address, TCP and UDP")
	fs.StringVar(&c.transportAddr, "transport-addr", "", "peer data transport listen address, TCP (default: the --peer-addr port plus one)")
	fs.StringVar(&c.advertiseHost, "advertise-host", "", "host name or IP other nodes reach this node at (default: the bind host)")
	fs.IntVar(&c.replicationFactor, "replication-factor", 3, "replicas per shard (R); fixed per cluster")
	fs.IntVar(&c.writeQuorum, "write-quorum", 2, "replicas that hold a write durably before it is acknowledged (W <= R)")
	fs.StringVar(&c.profile, "cluster-profile", "lan", "failure-detection timings: lan (data center) or local (all nodes on one machine: make run, tests)")
	fs.DurationVar(&c.clockOffset, "fault-clock-offset", 0, "fault injection: shift this node's lease and timestamp clock by this much (clock-skew tests; requires --insecure)")
	fs.DurationVar(&c.diskFullAfter, "fault-disk-full-after", 0, "fault injection: every store write fails with ENOSPC from this long after the node serves (disk-full tests; requires --insecure)")
	fs.Int64Var(&c.diskFreeMiB, "fault-disk-free-mib", -1, "fault injection: the store's free-space guard sees this many MiB free on the data disk (disk-low tests; -1: the real free space; changed at run time by POST /admin/v1/faults diskFreeMiB; requires --insecure)")
	fs.BoolVar(&c.faultInjection, "fault-injection", false, "enable POST /admin/v1/faults (tests and chaos runs only)")
}

// apply validates the cluster flags and copies them into cfg.
func (c *clusterFlags) apply(cfg *node.Config) error {
	switch c.profile {
	case "lan":
	case "local":
		cfg.LocalTimings = true
	default:
		return fmt.Errorf("--cluster-profile must be lan or local, got %q", c.profile)
	}
	if c.replicationFactor < 1 || c.writeQuorum < 1 || c.writeQuorum > c.replicationFactor {
		return fmt.Errorf("--write-quorum %d must be in [1, --replication-factor %d]", c.writeQuorum, c.replicationFactor)
	}
	cfg.ReplicationFactor, cfg.WriteQuorum = c.replicationFactor, c.writeQuorum
	cfg.GossipAddr, cfg.TransportAddr, cfg.AdvertiseHost = c.peerAddr, c.transportAddr, c.advertiseHost
	cfg.FaultInjection = c.faultInjection
	cfg.Bootstrap = c.bootstrap || (c.bootstrapNode != "" && c.bootstrapNode == cfg.NodeID)
	cfg.ClusterID = c.clusterID
	cfg.FaultClockOffset = c.clockOffset
	cfg.FaultDiskFullAfter = c.diskFullAfter
	if c.diskFreeMiB >= 0 {
		cfg.FaultDiskFreeMiB = &c.diskFreeMiB
	}
	for s := range strings.SplitSeq(c.join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Join = append(cfg.Join, s)
		}
	}
	return nil
}
