package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Coordinator leases. A node coordinates a shard (runs its commands, reads
// and writes) only while it holds the shard's lease: grants from a majority
// of the shard's replicas (and at least W of them), itself included. A
// replica grants one holder at a time, for leaseDuration from when the
// request arrived; the holder counts its lease from before it sent the
// request, less a margin for clock-rate drift, so its lease ends before any
// granter's grant does. Two majorities intersect, so two nodes never hold a
// shard's lease at once, and a stand-in waits out the previous holder's
// lease before it coordinates: timestamps stay strictly increasing per
// conversation across coordinator changes, and a partitioned node cannot
// keep coordinating beside the replicas that took over.
//
// Each grant reports the previous holder. A node that acquires a lease some
// other node held last (or that a granter does not remember: it restarted)
// catches the shard up from the other live replicas before it coordinates:
// the previous holder's acknowledged writes are on W replicas, and a lease
// majority meets every write quorum when W > R/2.
//
// Replicas refuse replicated writes from a node that is not the holder they
// granted, so a holder whose lease ran out while a write was in flight
// cannot get that write acknowledged.
//
// Preferred coordinators acquire and renew the leases of their shards in
// the background (leaseLoop); a stand-in acquires on its first request and
// renews while it serves, until the preferred coordinator is reachable
// again. A node that stops or no longer replicates a shard releases its
// lease, so the next holder need not wait it out. A restarted node that may
// have granted leases to other nodes shortly before it went down grants
// nothing until those grants have run out: before granting, a node records
// in its store how long its grants may run (leaseMarkerKey, rewritten about
// once a minute), and reads it back at start.

// leaseDuration is how long a grant lasts.
func (rs *Set) leaseDuration() time.Duration { return rs.cfg.LeaseDuration }

// leaseMargin is what a holder takes off its lease for clock-rate drift
// between it and its granters.
func (rs *Set) leaseMargin() time.Duration { return rs.leaseDuration() / 10 }

type leaseState struct {
	// Holder side: this node holds the lease while now < until.
	until time.Time
	used  time.Time // last request served under the lease
	// Granter side: who this node granted the lease to, until when (this
	// node's clock), and the last holder it granted (even if expired).
	holder     string
	grantUntil time.Time
	last       string
	// hint is the holder another replica named when it refused this node
	// a grant, believed until hintUntil: requests go there meanwhile, and
	// this node does not keep asking.
	hint      string
	hintUntil time.Time
	// acquiring is closed when an acquisition in flight finishes.
	acquiring chan struct{}
	// catchUpOwed is set when an acquisition learnt that another node held
	// the lease last but did not finish catching up: the granters now name
	// this node as the last holder, so the next acquisition would not know.
	catchUpOwed bool
	// epoch is the term this node writes the shard under, set when its
	// resolution of the shard finished (quorum.go); 0 when unknown.
	epoch uint64
	// resolveOwed is set when a write's outcome is unknown: this node
	// stepped down and resolves the shard before it serves it again.
	resolveOwed bool
	// failed lists the writes (epoch, id) this node answered with an
	// error since its last resolution: the next one drops them.
	failed [][2]uint64
}

type leases struct {
	mu           sync.Mutex
	s            []leaseState
	noGrantUntil time.Time

	// catchUps bounds the catch-ups of new leases running at once.
	catchUps chan struct{}

	// markerMu serializes writes of the grant marker; marker is the time
	// it records.
	markerMu sync.Mutex
	marker   time.Time
}

// leaseMarkerKey holds, in this node's store, the time until which leases
// this node granted to other nodes may run (unix milliseconds). It sorts
// after every shard's keys (store.ShardEnd of the last possible shard), so
// no shard scan, digest or sync sees it.
var leaseMarkerKey = []byte("\xff\xff\xffimcluster.lease-grants")

// initLeases sizes the lease table and, if this node granted leases to
// other nodes before it restarted, grants none until they have run out.
func (rs *Set) initLeases() error {
	rs.lease.s = make([]leaseState, rs.cfg.Shards)
	rs.lease.catchUps = make(chan struct{}, 4)
	v, err := rs.st.Get(leaseMarkerKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case len(v) != 8:
		return fmt.Errorf("cluster: lease marker of %d bytes", len(v))
	}
	until := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
	// Grants last leaseDuration from when they were made, so none runs
	// longer than that from now.
	rs.lease.noGrantUntil = minTime(until, rs.now().Add(rs.leaseDuration()))
	rs.lease.marker = until
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// recordGrants makes sure the store says this node's grants may run until
// at least now plus a lease (plus slack), writing about once a minute.
func (rs *Set) recordGrants(now time.Time) error {
	rs.lease.markerMu.Lock()
	defer rs.lease.markerMu.Unlock()
	if rs.lease.marker.After(now.Add(rs.leaseDuration() + time.Second)) {
		return nil
	}
	until := now.Add(time.Minute)
	// ApplyInternal: the marker is written while the disk is low too.
	if err := rs.st.ApplyInternal([]store.Op{{Kind: store.OpSet, Key: leaseMarkerKey,
		Value: binary.BigEndian.AppendUint64(nil, uint64(until.UnixMilli()))}}); err != nil {
		return err
	}
	rs.lease.marker = until
	return nil
}

// leaseQuorum is the number of grants a lease needs for a shard with n
// replicas: a majority, and at least the write quorum.
func (rs *Set) leaseQuorum(n int) int { return max(n/2+1, rs.quorum(n)) }

// holdsLease reports whether this node holds shard's lease now.
func (rs *Set) holdsLease(shard uint16) bool {
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	return rs.now().Before(rs.lease.s[shard].until)
}

// ensureLease returns whether this node holds shard's lease, acquiring it
// (and catching the shard up, if another node held it last) when it does
// not. Concurrent callers share one acquisition; the wait is bounded by the
// request timeout.
func (rs *Set) ensureLease(shard uint16) bool {
	deadline := rs.now().Add(rs.requestTimeout())
	tried := false
	for {
		rs.lease.mu.Lock()
		st := &rs.lease.s[shard]
		now := rs.now()
		if now.Before(st.until) {
			st.used = now
			rs.lease.mu.Unlock()
			return true
		}
		w := st.acquiring
		hinted := st.hint != "" && now.Before(st.hintUntil)
		rs.lease.mu.Unlock()
		switch {
		case w == nil && hinted:
			return false // another node holds it: the caller forwards there
		case w != nil:
			t := time.NewTimer(deadline.Sub(rs.now()))
			select {
			case <-w:
				t.Stop()
			case <-t.C:
				return false
			case <-rs.ctx.Done():
				t.Stop()
				return false
			}
		case tried || now.After(deadline):
			return false
		default:
			tried = true
			rs.acquireLeases([]uint16{shard})
		}
	}
}

// grantLocked grants shard's lease to cand unless another node holds an
// unexpired grant here (or, after a restart, grants this node made before
// may still run and the shard has other replicas). It returns the previous
// holder.
func (rs *Set) grantLocked(shard uint16, cand string, now time.Time) (ok bool, prev string) {
	l := &rs.lease
	if now.Before(l.noGrantUntil) && len(rs.peers.Ring().Replicas(int(shard))) > 1 {
		return false, ""
	}
	st := &l.s[shard]
	if st.holder != "" && st.holder != cand && now.Before(st.grantUntil) {
		return false, st.holder
	}
	prev = st.last
	st.holder, st.grantUntil, st.last = cand, now.Add(rs.leaseDuration()), cand
	return true, prev
}

// releaseGrantLocked ends the grant to holder here, if it has it.
func (rs *Set) releaseGrantLocked(shard uint16, holder string, now time.Time) {
	st := &rs.lease.s[shard]
	if st.holder == holder && now.Before(st.grantUntil) {
		st.grantUntil = now
	}
}

// leaseHolder returns the node this node granted shard's lease to, if the
// grant is current ("" if none).
func (rs *Set) leaseHolder(shard uint16) string {
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	st := &rs.lease.s[shard]
	if st.holder != "" && rs.now().Before(st.grantUntil) {
		return st.holder
	}
	return ""
}

// acceptsReplicate reports whether this node takes a replicated write of
// shard from node from: not while it granted the lease to another node.
func (rs *Set) acceptsReplicate(shard uint16, from string) bool {
	h := rs.leaseHolder(shard)
	return h == "" || h == from
}

// KnownHolder returns the node this node believes holds shard's lease: the
// one it granted it to, else the one a replica named when refusing this
// node ("" if none).
func (rs *Set) KnownHolder(shard uint16) string {
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	st := &rs.lease.s[shard]
	now := rs.now()
	switch {
	case st.holder != "" && now.Before(st.grantUntil):
		return st.holder
	case st.hint != "" && now.Before(st.hintUntil):
		return st.hint
	}
	return ""
}

// leaseWant is one shard of an acquisition round.
type leaseWant struct {
	shard   uint16
	grants  int
	need    int
	catchUp bool     // a granter's last holder was another node (or unknown)
	resolve bool     // this node must resolve the shard's pending writes first
	fresh   bool     // this node did not hold the lease when the round began
	granted []string // peers that granted
	waiter  chan struct{}
}

// acquireLeases acquires or renews the leases of shards (which this node
// replicates) in one round of requests to their other live replicas. Fresh
// leases some other node held last are caught up, and fresh leases of a
// shard whose term this node does not know (or whose write failed) are
// resolved (quorum.go), before they count.
func (rs *Set) acquireLeases(shards []uint16) {
	self := rs.cfg.NodeID
	rg := rs.peers.Ring()
	sent := rs.now()

	// Grant ourselves first; skip shards another node holds here.
	var ws []*leaseWant
	byPeer := map[string][]*leaseWant{}
	rs.lease.mu.Lock()
	for _, sh := range shards {
		reps := rg.Replicas(int(sh))
		if !rg.IsReplica(int(sh), self) || rs.lease.s[sh].acquiring != nil {
			continue
		}
		ok, prev := rs.grantLocked(sh, self, sent)
		if !ok {
			continue
		}
		st := &rs.lease.s[sh]
		w := &leaseWant{shard: sh, grants: 1, need: rs.leaseQuorum(len(reps)), catchUp: prev != self || st.catchUpOwed,
			resolve: st.epoch == 0 || st.resolveOwed, fresh: !sent.Before(st.until), waiter: make(chan struct{})}
		st.acquiring = w.waiter
		ws = append(ws, w)
		for _, id := range reps {
			if id != self && rs.peers.Live(id) {
				byPeer[id] = append(byPeer[id], w)
			}
		}
	}
	rs.lease.mu.Unlock()
	if len(ws) == 0 {
		return
	}

	// Ask the other replicas, in parallel; the round waits for all.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for peer, pw := range byPeer {
		wg.Go(func() {
			ok, last, err := rs.requestLeases(peer, pw)
			rs.noteLeaseCall(peer, err)
			if err == nil {
				rs.noteHolders(pw, ok, last)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, w := range pw {
				if ok[i] {
					w.grants++
					w.granted = append(w.granted, peer)
					w.catchUp = w.catchUp || last[i] != self
				}
			}
		})
	}
	wg.Wait()

	var failed []uint16
	for _, w := range ws {
		switch {
		case w.grants < w.need:
			if w.fresh {
				failed = append(failed, w.shard)
			}
			rs.finishLease(w, sent, false)
		case w.fresh && (w.catchUp || w.resolve):
			// Catch up off the round, a few shards at a time: renewals of
			// the other shards must not wait for it.
			select {
			case rs.lease.catchUps <- struct{}{}:
				rs.Go(func() {
					defer func() { <-rs.lease.catchUps }()
					ok := (!w.catchUp || rs.catchUpForLease(w.shard, w.granted)) && rs.resolveShard(w.shard, w.granted)
					if !ok {
						rs.releaseLeases([]uint16{w.shard})
					}
					rs.finishLease(w, sent, ok)
				})
			default:
				failed = append(failed, w.shard)
				rs.finishLease(w, sent, false)
			}
		default:
			rs.finishLease(w, sent, true)
		}
	}
	// Give back the grants of failed fresh acquisitions, so another
	// candidate need not wait them out.
	rs.releaseLeases(failed)
}

// finishLease ends an acquisition round for w: if ok this node holds the
// lease until a lease (less the margin) after sent; a failed renewal keeps
// what is left of the current lease.
func (rs *Set) finishLease(w *leaseWant, sent time.Time, ok bool) {
	rs.lease.mu.Lock()
	st := &rs.lease.s[w.shard]
	if ok && st.resolveOwed {
		// A write stepped down while this round was in flight: the lease
		// is taken again only with a resolution (a fresh acquisition).
		ok = false
	}
	if ok {
		st.until = sent.Add(rs.leaseDuration() - rs.leaseMargin())
		st.hint = ""
	}
	if w.fresh && w.catchUp {
		st.catchUpOwed = !ok
	}
	st.acquiring = nil
	rs.lease.mu.Unlock()
	close(w.waiter)
	if ok && w.fresh {
		rs.met.leasesAcquired.Inc()
		if rs.engine != nil {
			rs.engine.ForgetTimestamps() // another node may have assigned later timestamps
		}
	}
}

// noteHolders records, for the shards a peer refused, the holder it named
// (a refusal's "last holder" is the current one), for a quarter lease.
func (rs *Set) noteHolders(ws []*leaseWant, ok []bool, last []string) {
	until := rs.now().Add(rs.leaseDuration() / 4)
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	for i, w := range ws {
		if !ok[i] && last[i] != "" && last[i] != rs.cfg.NodeID {
			st := &rs.lease.s[w.shard]
			st.hint, st.hintUntil = last[i], until
		}
	}
}

// requestLeases asks peer for the leases of ws: per shard, granted and the
// last holder.
func (rs *Set) requestLeases(peer string, ws []*leaseWant) (ok []bool, last []string, err error) {
	ok, last = make([]bool, len(ws)), make([]string, len(ws))
	shards := make([]uint16, len(ws))
	for i, w := range ws {
		shards[i] = w.shard
	}
	var e wire.Enc
	e.Shards(shards)
	// A round waits for its slowest peer: a partitioned one must not
	// hold it longer than the renewal period.
	ctx, cancel := context.WithTimeout(rs.ctx, rs.leaseDuration()/4)
	defer cancel()
	resp, err := rs.call(ctx, peer, wire.Lease, e.B)
	if err != nil {
		return ok, last, err
	}
	d := wire.Dec{B: resp}
	if n := d.Count(); n != len(ws) {
		return ok, last, fmt.Errorf("cluster: lease answer for %d shards, asked %d", n, len(ws))
	}
	for i := range ws {
		ok[i], last[i] = d.Bool(), d.Str()
	}
	if err := d.Done("lease"); err != nil {
		clear(ok)
		return ok, last, err
	}
	return ok, last, nil
}

// noteLeaseCall records the outcome of a lease request, except a timeout:
// lease requests wait only a quarter lease, which a loaded peer (or a
// loaded caller) can exceed without being cut off. Counting that as a cut-off
// made the caller think it could not reach a quorum, give all its leases up
// and answer "not coordinating" (4200) under load. A failed renewal still
// ends the lease in time; the probe loop and the data path judge
// reachability.
func (rs *Set) noteLeaseCall(peer string, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, transport.ErrTimeout) {
		return
	}
	rs.peers.NoteCall(peer, err)
}

// releaseLeases gives up this node's leases of shards, here and at their
// other live replicas (best effort: a grant not released runs out).
func (rs *Set) releaseLeases(shards []uint16) {
	if len(shards) == 0 {
		return
	}
	self := rs.cfg.NodeID
	rg := rs.peers.Ring()
	byPeer := map[string][]uint16{}
	now := rs.now()
	rs.lease.mu.Lock()
	for _, sh := range shards {
		rs.lease.s[sh].until = time.Time{}
		rs.releaseGrantLocked(sh, self, now)
		for _, id := range rg.Replicas(int(sh)) {
			if id != self && rs.peers.Live(id) {
				byPeer[id] = append(byPeer[id], sh)
			}
		}
	}
	rs.lease.mu.Unlock()
	var wg sync.WaitGroup
	for peer, shs := range byPeer {
		wg.Go(func() {
			var e wire.Enc
			e.Shards(shs)
			ctx, cancel := context.WithTimeout(rs.ctx, rs.leaseDuration()/4)
			defer cancel()
			_, err := rs.call(ctx, peer, wire.LeaseRelease, e.B)
			rs.noteLeaseCall(peer, err)
		})
	}
	wg.Wait()
}

// leaseLoop acquires and renews, every quarter lease, the leases of the
// shards this node should coordinate and releases the others.
func (rs *Set) leaseLoop() { rs.every(rs.leaseDuration()/4, rs.leaseRound) }

func (rs *Set) leaseRound() {
	rs.diskRound()
	renew, release := rs.leasePlan()
	rs.releaseLeases(release)
	rs.acquireLeases(renew)
	held := 0
	for s := range rs.cfg.Shards {
		if rs.holdsLease(uint16(s)) {
			held++
		}
	}
	rs.met.leasesHeld.Set(float64(held))
}

// leasePlan splits shards into those whose lease this node should acquire
// or renew (it is the preferred coordinator and may coordinate, or it
// stands in, served a request within the last lease and the preferred one
// is still out of reach) and those whose lease it holds and should give up.
func (rs *Set) leasePlan() (renew, release []uint16) {
	rg := rs.peers.Ring()
	now := rs.now()
	for s := range rs.cfg.Shards {
		sh := uint16(s)
		rs.lease.mu.Lock()
		st := rs.lease.s[sh]
		rs.lease.mu.Unlock()
		held := now.Before(st.until)
		if !rg.IsReplica(s, rs.cfg.NodeID) || !rs.eligible(sh) {
			if held {
				release = append(release, sh)
			}
			continue
		}
		ids := rs.peers.Coordinators(sh)
		switch {
		case len(ids) > 0 && ids[0] == rs.cfg.NodeID:
			renew = append(renew, sh)
		case !held:
		case now.Sub(st.used) < rs.leaseDuration() && !rs.preferredBack(ids):
			renew = append(renew, sh)
		default:
			release = append(release, sh)
		}
	}
	return renew, release
}

// preferredBack reports whether the first of ids (the shard's preferred
// coordinator) is reachable and active, so a stand-in should hand back.
func (rs *Set) preferredBack(ids []string) bool {
	if len(ids) == 0 || ids[0] == rs.cfg.NodeID || !rs.peers.Live(ids[0]) || rs.peers.Suspected(ids[0]) {
		return false
	}
	return rs.peers.MemberActive(ids[0])
}

// catchUpForLease pulls shard from the replicas that granted this node's
// new lease and from the other live replicas (what each logged since this
// node's last catch-up from it, else what differs by digest: catchup.go),
// so the new holder has every write the previous holder had acknowledged (those are on W replicas, and the granters
// include one of them when W > R/2). It reports whether the pulls from all
// granters succeeded; the others are best effort.
func (rs *Set) catchUpForLease(shard uint16, granters []string) bool {
	ok := true
	for _, peer := range rs.others(rs.peers.Ring().Replicas(int(shard))) {
		granted := slices.Contains(granters, peer)
		if !granted && !rs.peers.Reachable(peer) {
			continue // best effort: do not wait on a peer found cut off
		}
		if err := rs.pull(rs.ctx, shard, peer); err != nil && granted {
			rs.log.Warn("Catching up a shard before coordinating failed", "shard", shard, "from", peer, "err", err)
			ok = false
		}
	}
	return ok
}

// serveLease answers a candidate's lease request: for each shard, whether
// it is granted and who held it last.
func (rs *Set) serveLease(from string, d *wire.Dec) ([]byte, error) {
	shards := d.Shards(rs.cfg.Shards)
	if err := d.Done("lease"); err != nil {
		return nil, err
	}
	now := rs.now()
	if err := rs.recordGrants(now); err != nil {
		return nil, err
	}
	var e wire.Enc
	e.U64(uint64(len(shards)))
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	for _, sh := range shards {
		ok, prev := rs.grantLocked(sh, from, now)
		e.Bool(ok)
		e.Str(prev)
	}
	return e.B, nil
}

// serveLeaseRelease drops the leases a holder gives up.
func (rs *Set) serveLeaseRelease(from string, d *wire.Dec) ([]byte, error) {
	shards := d.Shards(rs.cfg.Shards)
	if err := d.Done("lease release"); err != nil {
		return nil, err
	}
	now := rs.now()
	rs.lease.mu.Lock()
	defer rs.lease.mu.Unlock()
	for _, sh := range shards {
		rs.releaseGrantLocked(sh, from, now)
	}
	return nil, nil
}
