package cluster

import "errors"

var errNotImplemented = errors.New("cluster: not implemented")

// serveRangeDigest answers the per-range digests of a shard.
func (c *Cluster) serveRangeDigest(d *dec) ([]byte, error) { return nil, errNotImplemented }

// serveShardSize answers a shard's key and byte count.
func (c *Cluster) serveShardSize(d *dec) ([]byte, error) { return nil, errNotImplemented }
