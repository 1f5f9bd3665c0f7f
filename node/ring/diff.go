package ring

import (
	"fmt"
	"slices"
)

// Move is the change of one shard's replica set between two rings.
type Move struct {
	Shard int
	// Added are the nodes that replicate the shard in the new ring only.
	Added []string
	// Removed are the nodes that replicated the shard in the old ring only.
	Removed []string
}

// Diff returns the shards whose replica set (ignoring order) differs between
// from and to, ascending by shard. Both rings must have the same shard count.
// The result is newly allocated and owned by the caller.
func Diff(from, to *Ring) ([]Move, error) {
	if from.shards != to.shards {
		return nil, fmt.Errorf("%w: shard count %d != %d", ErrInvalidConfig, from.shards, to.shards)
	}
	var out []Move
	for s := range from.shards {
		a, b := from.Replicas(s), to.Replicas(s)
		var m Move
		for _, id := range b {
			if !slices.Contains(a, id) {
				m.Added = append(m.Added, id)
			}
		}
		for _, id := range a {
			if !slices.Contains(b, id) {
				m.Removed = append(m.Removed, id)
			}
		}
		if len(m.Added) > 0 || len(m.Removed) > 0 {
			m.Shard = s
			out = append(out, m)
		}
	}
	return out, nil
}

// MovedReplicas returns how many replicas Diff(from, to) adds, the data that
// has to be streamed.
func MovedReplicas(moves []Move) int {
	n := 0
	for _, m := range moves {
		n += len(m.Added)
	}
	return n
}
