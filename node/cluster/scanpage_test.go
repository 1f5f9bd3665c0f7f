package cluster

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/store"
)

// A remote scan of a shard whose records are large comes back in pages cut
// by bytes: eight 900 KiB records (7 MiB, more than the 4 MiB transport
// frame limit when sent as one page of up to 512 pairs) read completely
// from every node, the one that coordinates the shard and the one that asks
// it over the transport.
func TestClusterScanPagedByBytes(t *testing.T) {
	nodes, _ := startFieldTestNodes(t, 2, time.Hour)
	const shard, records, size = 1, 8, 900 << 10
	prefix := store.NewKey(shard, "app", store.FamConv).Bytes()
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	for i := range records {
		b := nodes[0].KV().NewBatch()
		b.Set(store.NewKey(shard, "app", store.FamConv).Str(fmt.Sprintf("c%02d", i)).Bytes(), value(i))
		if err := nodes[0].KV().Commit(b); err != nil {
			t.Fatalf("write record %d: %v", i, err)
		}
	}
	remote := 0
	for _, n := range nodes {
		if !n.Coordinates(shard) {
			remote++
		}
		for _, reverse := range []bool{false, true} {
			var got []int
			err := n.KV().ScanPrefix(prefix, reverse, func(k, v []byte) (bool, error) {
				i := int(v[0] - 'a')
				if !bytes.Equal(v, value(i)) {
					return false, fmt.Errorf("record %x: wrong value", k)
				}
				got = append(got, i)
				return true, nil
			})
			if err != nil {
				t.Fatalf("%s (coordinates %v) reverse %v: %v", n.cfg.NodeID, n.Coordinates(shard), reverse, err)
			}
			if len(got) != records {
				t.Fatalf("%s reverse %v: %d records %v, want %d", n.cfg.NodeID, reverse, len(got), got, records)
			}
		}
	}
	if remote == 0 {
		t.Fatal("both nodes coordinate the shard: no scan crossed the transport")
	}
}
