package ring

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Score returns the rendezvous score of node id for shard (see the package
// doc). It is exported for tools and tests that explain a placement.
func Score(id string, shard int) uint64 {
	var stack [128]byte
	b := appendEnc(stack[:0], id)
	b = binary.BigEndian.AppendUint32(b, uint32(shard))
	return xxhash.Sum64(b)
}

// pair is one (shard, node) candidate of the bounded-load assignment.
type pair struct {
	score uint64
	shard uint32
	node  uint16 // index into the sorted node ids
}

// place computes the replica lists of balanced rendezvous hashing (package
// doc). nodes are sorted and unique; r <= len(nodes). The result holds r ids
// per shard.
func place(nodes []string, shards, r int) []string {
	out := make([]string, shards*r)
	if r == 0 {
		return out
	}
	pairs := scoredPairs(nodes, shards)
	idx := make([]int16, shards*r) // node index per slot, -1 while empty
	for i := range idx {
		idx[i] = -1
	}
	total := make([]int, len(nodes)) // replicas per node over ranks 0..k
	for k := range r {
		if fillRankQuota(idx, pairs, total, shards, r, k) < shards {
			fillRankSwap(idx, total, shards, r, k)
		}
	}
	for i, ni := range idx {
		out[i] = nodes[ni]
	}
	return out
}

// fillRankQuota assigns rank k by descending score under the cumulative
// quota (see quota). It returns the shards filled.
func fillRankQuota(idx []int16, pairs []pair, total []int, shards, r, k int) int {
	q := newQuota(total, shards, k)
	filled := 0
	for _, p := range pairs {
		if filled == shards {
			break
		}
		s := int(p.shard)
		row := idx[s*r : s*r+r]
		t := total[p.node]
		if row[k] >= 0 || !q.spare(t) || slices.Contains(row[:k], int16(p.node)) {
			continue
		}
		q.take(t)
		row[k] = int16(p.node)
		total[p.node]++
		filled++
	}
	return filled
}

// quota is the cumulative capacity of rank k: after rank k a node holds at
// most base replicas, and at most extra nodes may hold base+1.
type quota struct {
	base, extra int
}

func newQuota(total []int, shards, k int) quota {
	want := (k + 1) * shards
	q := quota{base: want / len(total), extra: want % len(total)}
	for _, t := range total {
		if t > q.base {
			q.extra--
		}
	}
	return q
}

// spare reports whether a node holding t replicas may take one more.
func (q *quota) spare(t int) bool { return t < q.base || (t == q.base && q.extra > 0) }

// take records that a node holding t replicas took one more.
func (q *quota) take(t int) {
	if t == q.base {
		q.extra--
	}
}

// fillRankSwap completes rank k for the shards fillRankQuota left empty
// because every node with quota left is already in their list. For such a
// shard s it looks, in shard order, for a shard t whose rank-k node v is not
// in s's list while a node u with quota left is not in t's list, and moves
// t's rank k to u and gives v to s: the counts stay within quota. If no such
// swap exists (tiny clusters) s takes the least-loaded node not in its list.
func fillRankSwap(idx []int16, total []int, shards, r, k int) {
	q := newQuota(total, shards, k)
	for s := range shards {
		row := idx[s*r : s*r+r]
		if row[k] >= 0 {
			continue
		}
		if swapInto(idx, total, &q, shards, r, k, s) {
			continue
		}
		least := int16(-1)
		for u := range total {
			if !slices.Contains(row[:k], int16(u)) && (least < 0 || total[u] < total[least]) {
				least = int16(u)
			}
		}
		row[k] = least
		q.take(total[least])
		total[least]++
	}
}

// swapInto performs the swap of fillRankSwap for shard s and reports whether
// it found one.
func swapInto(idx []int16, total []int, q *quota, shards, r, k, s int) bool {
	row := idx[s*r : s*r+r]
	for u := range total {
		if !q.spare(total[u]) {
			continue
		}
		for t := range shards {
			trow := idx[t*r : t*r+r]
			v := trow[k]
			if v < 0 || slices.Contains(row[:k], v) || slices.Contains(trow[:k], int16(u)) {
				continue
			}
			trow[k] = int16(u)
			q.take(total[u])
			total[u]++
			row[k] = v
			return true
		}
	}
	return false
}

// scoredPairs returns every (shard, node) pair sorted by descending score,
// ties broken by node id (nodes are sorted, so by index) then shard.
func scoredPairs(nodes []string, shards int) []pair {
	pairs := make([]pair, 0, len(nodes)*shards)
	var buf [128]byte
	for ni, id := range nodes {
		b := appendEnc(buf[:0], id)
		b = append(b, 0, 0, 0, 0)
		tail := b[len(b)-4:]
		for s := range shards {
			binary.BigEndian.PutUint32(tail, uint32(s))
			pairs = append(pairs, pair{score: xxhash.Sum64(b), shard: uint32(s), node: uint16(ni)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		if c := cmp.Compare(a.node, b.node); c != 0 {
			return c
		}
		return cmp.Compare(a.shard, b.shard)
	})
	return pairs
}
