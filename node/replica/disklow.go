package replica

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// A node whose disk is low (store.ErrDiskLow: its free space fell below the
// reserve, store/diskguard.go) stores no new write, so the cluster goes on
// without it, the way it does without a draining node:
//
//   - It stands aside (standAside): it does not take or renew the leases of
//     a shard that has another replica reachable and not known to be low,
//     gives up those it holds (leasePlan, within a quarter lease), and
//     answers requests to coordinate such a shard "not ready" (the router
//     moves on to the next replica, which takes the lease). It still grants
//     leases, serves reads, digests, catch-up sources and resolutions.
//   - As a replica it refuses wire.Prepare with wire.ErrDiskLow before
//     storing anything; its coordinator counts it as a failed replica and
//     meets its quorum with the others (R=3, W=2: one low node costs no
//     client error). Commit notices, roll-forwards and new terms still
//     apply here: see the store's list.
//   - It pulls nothing (catch-up and anti-entropy wait), and once its disk
//     has space again it catches every shard it replicates up, as a
//     returning replica does (resync: the shards are not served here until
//     caught up), then takes writes and leases again.
//
// Who is low: a low node asks the other replicas of its shards
// (wire.DiskLow) every lease round, and a coordinator marks a replica low
// when it refuses a Prepare for that reason, asking it again each round
// until it is not. A write whose shard has fewer than W replicas not low
// (this node included) is refused before anything is stored, with
// wire.ErrDiskLow, which the router answers as the protocol's "storage
// full" error: nothing was stored, so the write never becomes visible.
// When no replica can stand in (one node, or every replica low), the low
// node coordinates: reads work and writes get that error.

// lowPeerFor is how long a peer stays marked low without being confirmed:
// a lease, four probe rounds.
func (rs *Set) lowPeerFor() time.Duration { return rs.leaseDuration() }

// diskPeers holds the peers known to be low, each until when. The map is
// replaced, never modified, so readers need no lock: the write path loads
// it once per write (nil in the usual case: no peer low). mu orders the
// replacements (a leaf lock, held for a map copy).
type diskPeers struct {
	mu  sync.Mutex
	low atomic.Pointer[map[string]time.Time]
	// wasLow is this node's disk state at the last lease round (owned by
	// the lease loop).
	wasLow bool
}

// peerLow reports whether peer is marked low.
func (rs *Set) peerLow(peer string) bool {
	m := rs.disk.low.Load()
	if m == nil {
		return false
	}
	until, ok := (*m)[peer]
	return ok && rs.now().Before(until)
}

// markPeerLow marks peer low for lowPeerFor, or clears its mark.
func (rs *Set) markPeerLow(peer string, low bool) {
	d := &rs.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	now := rs.now()
	var next map[string]time.Time
	if m := d.low.Load(); m != nil {
		until, ok := (*m)[peer]
		if !ok && !low || ok && low && until.Sub(now) > rs.lowPeerFor()/2 {
			return // nothing to change, or marked recently enough
		}
		next = maps.Clone(*m)
	}
	if next == nil {
		if !low {
			return
		}
		next = map[string]time.Time{}
	}
	maps.DeleteFunc(next, func(_ string, until time.Time) bool { return !now.Before(until) })
	if low {
		next[peer] = now.Add(rs.lowPeerFor())
	} else {
		delete(next, peer)
	}
	if len(next) == 0 {
		d.low.Store(nil)
		return
	}
	d.low.Store(&next)
}

// standAside reports whether this node, its disk low, leaves shard to
// another replica: one that is reachable and not known to be low.
func (rs *Set) standAside(shard uint16) bool {
	if !rs.st.DiskLow() {
		return false
	}
	for _, id := range rs.peers.Ring().Replicas(int(shard)) {
		if id != rs.cfg.NodeID && rs.peers.Reachable(id) && !rs.peerLow(id) {
			return true
		}
	}
	return false
}

// errStoodAside answers a request to coordinate a shard this node leaves
// to another replica: not ready, so the caller moves on.
var errStoodAside = wire.Wrap(ErrNotReady, errors.New("this node's disk is low: another replica coordinates"))

// checkDiskQuorum refuses a write of shard before anything is stored when
// this node's disk is low (stood aside: another replica takes it; else
// wire.ErrDiskLow) or fewer than need of replicas are not known to be low.
func (rs *Set) checkDiskQuorum(shard uint16, replicas []string, need int) error {
	if rs.st.DiskLow() {
		if rs.standAside(shard) {
			return errStoodAside
		}
		if err := rs.st.RefuseWrite(); err != nil {
			return wire.Wrap(wire.ErrDiskLow, err)
		}
		return nil // it has space again
	}
	if rs.disk.low.Load() == nil {
		return nil
	}
	ok := 0
	for _, id := range replicas {
		if id == rs.cfg.NodeID || !rs.peerLow(id) {
			ok++
		}
	}
	if ok < need {
		return wire.Wrap(wire.ErrDiskLow, fmt.Errorf("%d of the shard's %d replicas have storage left, %d needed", ok, len(replicas), need))
	}
	return nil
}

// refusedLow maps a store's ErrDiskLow to the wire's, so a coordinator
// can tell a replica's full disk from other failures.
func refusedLow(err error) error {
	if errors.Is(err, store.ErrDiskLow) && !errors.Is(err, wire.ErrDiskLow) {
		return wire.Wrap(wire.ErrDiskLow, err)
	}
	return err
}

// serveDiskLow answers whether this node's disk is low.
func (rs *Set) serveDiskLow(d *wire.Dec) ([]byte, error) {
	if err := d.Done("disk low"); err != nil {
		return nil, err
	}
	var e wire.Enc
	e.Bool(rs.st.DiskLow())
	return e.B, nil
}

// diskRound runs in each lease round: it asks the peers whether their disk
// is low (every peer sharing a shard with this node while its own disk is
// low, else only those marked low), and after this node's disk comes back
// it catches its shards up (resync). wasLow is owned by the lease loop.
func (rs *Set) diskRound() {
	low := rs.st.DiskLow()
	if rs.disk.wasLow && !low {
		rs.log.Info("Disk has space again: catching up the shards this node replicates before coordinating them")
		var shards []uint16
		for _, s := range rs.Replicated() {
			shards = append(shards, uint16(s))
		}
		rs.sync.resync(shards)
	}
	rs.disk.wasLow = low
	var peers []string
	if low {
		rg := rs.peers.Ring()
		seen := map[string]bool{rs.cfg.NodeID: true}
		for _, s := range rg.ShardsOf(rs.cfg.NodeID) {
			for _, id := range rg.Replicas(s) {
				if !seen[id] && rs.peers.Live(id) {
					seen[id] = true
					peers = append(peers, id)
				}
			}
		}
	} else if m := rs.disk.low.Load(); m != nil {
		for id := range *m {
			peers = append(peers, id)
		}
	}
	var wg sync.WaitGroup
	for _, peer := range peers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(rs.ctx, rs.leaseDuration()/4)
			defer cancel()
			out, err := rs.call(ctx, peer, wire.DiskLow, nil)
			if err != nil {
				return // unreachable, or an earlier build: a mark runs out
			}
			d := wire.Dec{B: out}
			v := d.Bool()
			if d.Done("disk low") == nil {
				rs.markPeerLow(peer, v)
			}
		})
	}
	wg.Wait()
}
