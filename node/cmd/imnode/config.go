package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// clusterFlags are the multi-node settings the operator passes. This version
// of imnode serves one node per data set: routing between nodes and
// replication are not built yet, so it refuses configurations that would
// silently split the data over independent nodes.
type clusterFlags struct {
	name              string
	join              string
	peerAddr          string
	advertiseHost     string
	replicationFactor int
	writeQuorum       int
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "cluster-name", "", "cluster name (informational)")
	fs.StringVar(&c.join, "join", "", "seed peers host:port,... (multi-node clusters are not supported by this version)")
	fs.StringVar(&c.peerAddr, "peer-addr", "", "peer listen address (reserved for multi-node clusters)")
	fs.StringVar(&c.advertiseHost, "advertise-host", "", "host name peers reach this node at (reserved for multi-node clusters)")
	fs.IntVar(&c.replicationFactor, "replication-factor", 1, "replicas per shard; must be 1 in this version")
	fs.IntVar(&c.writeQuorum, "write-quorum", 1, "write quorum; must be 1 in this version")
}

// errMultiNode explains why a multi-node configuration is refused.
var errMultiNode = errors.New("this imnode version serves one node per data set: routing between nodes and " +
	"replication are not available yet, so run IMCluster with replicas: 1, replicationFactor: 1, writeQuorum: 1")

func (c *clusterFlags) validate(nodeID string) error {
	if c.replicationFactor != 1 || c.writeQuorum != 1 {
		return fmt.Errorf("replicationFactor %d, writeQuorum %d: %w", c.replicationFactor, c.writeQuorum, errMultiNode)
	}
	// Under the operator node ids are StatefulSet pod names; any ordinal but
	// 0 means the cluster was scaled beyond one node.
	if c.join != "" {
		if i := strings.LastIndexByte(nodeID, '-'); i >= 0 {
			if n, err := strconv.Atoi(nodeID[i+1:]); err == nil && n > 0 {
				return fmt.Errorf("node %s: %w", nodeID, errMultiNode)
			}
		}
	}
	return nil
}
