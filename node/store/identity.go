package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// IdentityFile is the name of the identity file in a data directory.
const IdentityFile = "IMNODE_IDENTITY"

// DataFormat is the version of the key and value layout this build reads
// and writes. A data directory whose identity names a newer one was written
// by a newer imnode and is refused.
const DataFormat = 1

// maxIdentitySize bounds what ReadIdentity reads: the file is a few hundred
// bytes; anything larger is not an identity file.
const maxIdentitySize = 64 << 10

// ErrNoIdentity is returned by ReadIdentity when the directory has no
// identity file (a new data directory, or one from before identity files).
var ErrNoIdentity = errors.New("store: no identity file")

// Identity is what a data directory records about the node and cluster it
// belongs to, written atomically to IdentityFile on the node's first start
// and updated when the node learns its cluster id.
type Identity struct {
	// ClusterID names the cluster: generated (or taken from --cluster-id)
	// at bootstrap, learned from the cluster by a joining node. Empty
	// until a new joining node has joined.
	ClusterID string `json:"clusterId"`
	// NodeID is the node id the directory belongs to.
	NodeID string `json:"nodeId"`
	// Shards is the cluster's shard count, fixed for the life of the data.
	Shards int `json:"shards"`
	// DataFormat is the layout version (DataFormat of the build that wrote
	// the data).
	DataFormat int `json:"dataFormat"`
	// Clustered is set once the node has seen another member of its
	// cluster: from then on it must not start without --join (alone it
	// would form a second cluster).
	Clustered bool `json:"clustered,omitempty"`
}

// Check compares a directory's identity with what this start was given and
// names the first difference. want.ClusterID empty means "not given".
func (id Identity) Check(want Identity) error {
	switch {
	case id.DataFormat > DataFormat:
		return fmt.Errorf("data format %d is newer than this imnode's %d: the directory was written by a newer imnode; run that version", id.DataFormat, DataFormat)
	case id.NodeID != want.NodeID:
		return fmt.Errorf("the data directory belongs to node %q, this start has --node-id %q", id.NodeID, want.NodeID)
	case id.Shards != want.Shards:
		return fmt.Errorf("the data directory was created with --shards %d, this start has --shards %d (the shard count is fixed for a cluster's lifetime)", id.Shards, want.Shards)
	case want.ClusterID != "" && id.ClusterID != "" && id.ClusterID != want.ClusterID:
		return fmt.Errorf("the data directory belongs to cluster %q, this start has --cluster-id %q", id.ClusterID, want.ClusterID)
	}
	return nil
}

// ReadIdentity reads dir's identity file; ErrNoIdentity when there is none.
func ReadIdentity(dir string) (Identity, error) {
	var id Identity
	path := filepath.Join(dir, IdentityFile)
	f, err := os.Open(path) //nolint:gosec // the data directory is the operator's choice
	if errors.Is(err, fs.ErrNotExist) {
		return id, ErrNoIdentity
	}
	if err != nil {
		return id, fmt.Errorf("store: read identity: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxIdentitySize+1))
	if err != nil {
		return id, fmt.Errorf("store: read identity %s: %w", path, err)
	}
	if len(data) > maxIdentitySize {
		return id, fmt.Errorf("store: identity %s is larger than %d bytes", path, maxIdentitySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return id, fmt.Errorf("store: identity %s: %w", path, err)
	}
	if id.NodeID == "" || id.Shards < 1 || id.DataFormat < 1 {
		return id, fmt.Errorf("store: identity %s: nodeId, shards and dataFormat are required", path)
	}
	return id, nil
}

// WriteIdentity writes id to dir's identity file atomically: a temporary
// file, fsynced, renamed over the old one, and the directory fsynced, so a
// crash leaves the old file or the new one, never a torn one.
func WriteIdentity(dir string, id Identity) error {
	data, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := filepath.Join(dir, IdentityFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) //nolint:gosec // path is in the data directory
	if err != nil {
		return fmt.Errorf("store: write identity: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: write identity: %w", err)
	}
	d, err := os.Open(dir) //nolint:gosec // the data directory
	if err != nil {
		return fmt.Errorf("store: write identity: %w", err)
	}
	err = d.Sync()
	_ = d.Close()
	if err != nil {
		return fmt.Errorf("store: write identity: sync %s: %w", dir, err)
	}
	return nil
}
