package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
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
func (c *Cluster) leaseDuration() time.Duration {
	if c.cfg.Local {
		return 2 * time.Second
	}
	return 5 * time.Second
}

// leaseMargin is what a holder takes off its lease for clock-rate drift
// between it and its granters.
func (c *Cluster) leaseMargin() time.Duration { return c.leaseDuration() / 10 }

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
func (c *Cluster) initLeases() error {
	c.lease.s = make([]leaseState, c.cfg.Shards)
	c.lease.catchUps = make(chan struct{}, 4)
	v, err := c.st.Get(leaseMarkerKey)
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
	c.lease.noGrantUntil = minTime(until, time.Now().Add(c.leaseDuration()))
	c.lease.marker = until
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
func (c *Cluster) recordGrants(now time.Time) error {
	c.lease.markerMu.Lock()
	defer c.lease.markerMu.Unlock()
	if c.lease.marker.After(now.Add(c.leaseDuration() + time.Second)) {
		return nil
	}
	until := now.Add(time.Minute)
	if err := c.st.Apply([]store.Op{{Kind: store.OpSet, Key: leaseMarkerKey,
		Value: binary.BigEndian.AppendUint64(nil, uint64(until.UnixMilli()))}}); err != nil {
		return err
	}
	c.lease.marker = until
	return nil
}

// leaseQuorum is the number of grants a lease needs for a shard with n
// replicas: a majority, and at least the write quorum.
func (c *Cluster) leaseQuorum(n int) int { return max(n/2+1, c.quorum(n)) }

// holdsLease reports whether this node holds shard's lease now.
func (c *Cluster) holdsLease(shard uint16) bool {
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	return time.Now().Before(c.lease.s[shard].until)
}

// ensureLease returns whether this node holds shard's lease, acquiring it
// (and catching the shard up, if another node held it last) when it does
// not. Concurrent callers share one acquisition; the wait is bounded by the
// request timeout.
func (c *Cluster) ensureLease(shard uint16) bool {
	deadline := time.Now().Add(c.requestTimeout())
	tried := false
	for {
		c.lease.mu.Lock()
		st := &c.lease.s[shard]
		now := time.Now()
		if now.Before(st.until) {
			st.used = now
			c.lease.mu.Unlock()
			return true
		}
		w := st.acquiring
		hinted := st.hint != "" && now.Before(st.hintUntil)
		c.lease.mu.Unlock()
		switch {
		case w == nil && hinted:
			return false // another node holds it: the caller forwards there
		case w != nil:
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-w:
				t.Stop()
			case <-t.C:
				return false
			case <-c.ctx.Done():
				t.Stop()
				return false
			}
		case tried || now.After(deadline):
			return false
		default:
			tried = true
			c.acquireLeases([]uint16{shard})
		}
	}
}

// grantLocked grants shard's lease to cand unless another node holds an
// unexpired grant here (or, after a restart, grants this node made before
// may still run and the shard has other replicas). It returns the previous
// holder.
func (c *Cluster) grantLocked(shard uint16, cand string, now time.Time) (ok bool, prev string) {
	l := &c.lease
	if now.Before(l.noGrantUntil) && len(c.ring.Load().Replicas(int(shard))) > 1 {
		return false, ""
	}
	st := &l.s[shard]
	if st.holder != "" && st.holder != cand && now.Before(st.grantUntil) {
		return false, st.holder
	}
	prev = st.last
	st.holder, st.grantUntil, st.last = cand, now.Add(c.leaseDuration()), cand
	return true, prev
}

// releaseGrantLocked ends the grant to holder here, if it has it.
func (c *Cluster) releaseGrantLocked(shard uint16, holder string, now time.Time) {
	st := &c.lease.s[shard]
	if st.holder == holder && now.Before(st.grantUntil) {
		st.grantUntil = now
	}
}

// leaseHolder returns the node this node granted shard's lease to, if the
// grant is current ("" if none).
func (c *Cluster) leaseHolder(shard uint16) string {
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	st := &c.lease.s[shard]
	if st.holder != "" && time.Now().Before(st.grantUntil) {
		return st.holder
	}
	return ""
}

// acceptsReplicate reports whether this node takes a replicated write of
// shard from node from: not while it granted the lease to another node.
func (c *Cluster) acceptsReplicate(shard uint16, from string) bool {
	h := c.leaseHolder(shard)
	return h == "" || h == from
}

// knownHolder returns the node this node believes holds shard's lease: the
// one it granted it to, else the one a replica named when refusing this
// node ("" if none).
func (c *Cluster) knownHolder(shard uint16) string {
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	st := &c.lease.s[shard]
	now := time.Now()
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
	fresh   bool     // this node did not hold the lease when the round began
	granted []string // peers that granted
	waiter  chan struct{}
}

// acquireLeases acquires or renews the leases of shards (which this node
// replicates) in one round of requests to their other live replicas. Fresh
// leases some other node held last are caught up before they count.
func (c *Cluster) acquireLeases(shards []uint16) {
	self := c.cfg.NodeID
	rg := c.ring.Load()
	sent := time.Now()

	// Grant ourselves first; skip shards another node holds here.
	var ws []*leaseWant
	byPeer := map[string][]*leaseWant{}
	c.lease.mu.Lock()
	for _, sh := range shards {
		reps := rg.Replicas(int(sh))
		if !rg.IsReplica(int(sh), self) || c.lease.s[sh].acquiring != nil {
			continue
		}
		ok, prev := c.grantLocked(sh, self, sent)
		if !ok {
			continue
		}
		st := &c.lease.s[sh]
		w := &leaseWant{shard: sh, grants: 1, need: c.leaseQuorum(len(reps)), catchUp: prev != self || st.catchUpOwed,
			fresh: !sent.Before(st.until), waiter: make(chan struct{})}
		st.acquiring = w.waiter
		ws = append(ws, w)
		for _, id := range reps {
			if id != self && c.live(id) {
				byPeer[id] = append(byPeer[id], w)
			}
		}
	}
	c.lease.mu.Unlock()
	if len(ws) == 0 {
		return
	}

	// Ask the other replicas, in parallel; the round waits for all.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for peer, pw := range byPeer {
		wg.Go(func() {
			ok, last, err := c.requestLeases(peer, pw)
			c.noteCall(peer, err)
			if err == nil {
				c.noteHolders(pw, ok, last)
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
			c.finishLease(w, sent, false)
		case w.fresh && w.catchUp:
			// Catch up off the round, a few shards at a time: renewals of
			// the other shards must not wait for it.
			select {
			case c.lease.catchUps <- struct{}{}:
				c.wg.Go(func() {
					defer func() { <-c.lease.catchUps }()
					ok := c.catchUpForLease(w.shard, w.granted)
					if !ok {
						c.releaseLeases([]uint16{w.shard})
					}
					c.finishLease(w, sent, ok)
				})
			default:
				failed = append(failed, w.shard)
				c.finishLease(w, sent, false)
			}
		default:
			c.finishLease(w, sent, true)
		}
	}
	// Give back the grants of failed fresh acquisitions, so another
	// candidate need not wait them out.
	c.releaseLeases(failed)
}

// finishLease ends an acquisition round for w: if ok this node holds the
// lease until a lease (less the margin) after sent; a failed renewal keeps
// what is left of the current lease.
func (c *Cluster) finishLease(w *leaseWant, sent time.Time, ok bool) {
	c.lease.mu.Lock()
	st := &c.lease.s[w.shard]
	if ok {
		st.until = sent.Add(c.leaseDuration() - c.leaseMargin())
		st.hint = ""
	}
	if w.fresh && w.catchUp {
		st.catchUpOwed = !ok
	}
	st.acquiring = nil
	c.lease.mu.Unlock()
	close(w.waiter)
	if ok && w.fresh {
		c.met.leasesAcquired.Inc()
		if c.engine != nil {
			c.engine.ForgetTimestamps() // another node may have assigned later timestamps
		}
	}
}

// noteHolders records, for the shards a peer refused, the holder it named
// (a refusal's "last holder" is the current one), for a quarter lease.
func (c *Cluster) noteHolders(ws []*leaseWant, ok []bool, last []string) {
	until := time.Now().Add(c.leaseDuration() / 4)
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	for i, w := range ws {
		if !ok[i] && last[i] != "" && last[i] != c.cfg.NodeID {
			st := &c.lease.s[w.shard]
			st.hint, st.hintUntil = last[i], until
		}
	}
}

// requestLeases asks peer for the leases of ws: per shard, granted and the
// last holder.
func (c *Cluster) requestLeases(peer string, ws []*leaseWant) (ok []bool, last []string, err error) {
	ok, last = make([]bool, len(ws)), make([]string, len(ws))
	shards := make([]uint16, len(ws))
	for i, w := range ws {
		shards[i] = w.shard
	}
	var e enc
	e.shards(shards)
	// A round waits for its slowest peer: a partitioned one must not
	// hold it longer than the renewal period.
	ctx, cancel := context.WithTimeout(c.ctx, c.leaseDuration()/4)
	defer cancel()
	resp, err := c.tr.Call(ctx, peer, mLease, e.b)
	if err != nil {
		return ok, last, err
	}
	d := dec{b: resp}
	if n := d.count(); n != len(ws) {
		return ok, last, fmt.Errorf("cluster: lease answer for %d shards, asked %d", n, len(ws))
	}
	for i := range ws {
		ok[i], last[i] = d.bool(), d.str()
	}
	if err := d.done("lease"); err != nil {
		clear(ok)
		return ok, last, err
	}
	return ok, last, nil
}

// releaseLeases gives up this node's leases of shards, here and at their
// other live replicas (best effort: a grant not released runs out).
func (c *Cluster) releaseLeases(shards []uint16) {
	if len(shards) == 0 {
		return
	}
	self := c.cfg.NodeID
	rg := c.ring.Load()
	byPeer := map[string][]uint16{}
	now := time.Now()
	c.lease.mu.Lock()
	for _, sh := range shards {
		c.lease.s[sh].until = time.Time{}
		c.releaseGrantLocked(sh, self, now)
		for _, id := range rg.Replicas(int(sh)) {
			if id != self && c.live(id) {
				byPeer[id] = append(byPeer[id], sh)
			}
		}
	}
	c.lease.mu.Unlock()
	var wg sync.WaitGroup
	for peer, shs := range byPeer {
		wg.Go(func() {
			var e enc
			e.shards(shs)
			ctx, cancel := context.WithTimeout(c.ctx, c.leaseDuration()/4)
			defer cancel()
			_, err := c.tr.Call(ctx, peer, mLeaseRelease, e.b)
			c.noteCall(peer, err)
		})
	}
	wg.Wait()
}

// leaseLoop acquires and renews, every quarter lease, the leases of the
// shards this node should coordinate and releases the others.
func (c *Cluster) leaseLoop() { c.every(c.leaseDuration()/4, c.leaseRound) }

func (c *Cluster) leaseRound() {
	renew, release := c.leasePlan()
	c.releaseLeases(release)
	c.acquireLeases(renew)
	held := 0
	for s := range c.cfg.Shards {
		if c.holdsLease(uint16(s)) {
			held++
		}
	}
	c.met.leasesHeld.Set(float64(held))
}

// leasePlan splits shards into those whose lease this node should acquire
// or renew (it is the preferred coordinator and may coordinate, or it
// stands in, served a request within the last lease and the preferred one
// is still out of reach) and those whose lease it holds and should give up.
func (c *Cluster) leasePlan() (renew, release []uint16) {
	rg := c.ring.Load()
	now := time.Now()
	for s := range c.cfg.Shards {
		sh := uint16(s)
		c.lease.mu.Lock()
		st := c.lease.s[sh]
		c.lease.mu.Unlock()
		held := now.Before(st.until)
		if !rg.IsReplica(s, c.cfg.NodeID) || !c.eligible(sh) {
			if held {
				release = append(release, sh)
			}
			continue
		}
		ids := c.coordinators(sh)
		switch {
		case len(ids) > 0 && ids[0] == c.cfg.NodeID:
			renew = append(renew, sh)
		case !held:
		case now.Sub(st.used) < c.leaseDuration() && !c.preferredBack(ids):
			renew = append(renew, sh)
		default:
			release = append(release, sh)
		}
	}
	return renew, release
}

// preferredBack reports whether the first of ids (the shard's preferred
// coordinator) is reachable and active, so a stand-in should hand back.
func (c *Cluster) preferredBack(ids []string) bool {
	if len(ids) == 0 || ids[0] == c.cfg.NodeID || !c.live(ids[0]) || c.suspected(ids[0]) {
		return false
	}
	for _, m := range c.snap.Load().Members {
		if m.ID == ids[0] {
			return m.State == ring.StateActive
		}
	}
	return false
}

// catchUpForLease pulls shard from the replicas that granted this node's
// new lease and from the other live replicas, each only if its digest
// differs from this node's, so the new holder has every write the previous
// holder had acknowledged (those are on W replicas, and the granters
// include one of them when W > R/2). It reports whether the pulls from all
// granters succeeded; the others are best effort.
func (c *Cluster) catchUpForLease(shard uint16, granters []string) bool {
	ok := true
	for _, peer := range c.others(c.ring.Load().Replicas(int(shard))) {
		granted := slices.Contains(granters, peer)
		if !granted && !c.live(peer) {
			continue
		}
		// pull compares range digests first and copies only what differs.
		if err := c.pull(c.ctx, shard, peer); err != nil && granted {
			c.log.Warn("Catching up a shard before coordinating failed", "shard", shard, "from", peer, "err", err)
			ok = false
		}
	}
	return ok
}

// serveLease answers a candidate's lease request: for each shard, whether
// it is granted and who held it last.
func (c *Cluster) serveLease(from string, d *dec) ([]byte, error) {
	shards := d.shards(c.cfg.Shards)
	if err := d.done("lease"); err != nil {
		return nil, err
	}
	now := time.Now()
	if err := c.recordGrants(now); err != nil {
		return nil, err
	}
	var e enc
	e.u64(uint64(len(shards)))
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	for _, sh := range shards {
		ok, prev := c.grantLocked(sh, from, now)
		e.bool(ok)
		e.str(prev)
	}
	return e.b, nil
}

// serveLeaseRelease drops the leases a holder gives up.
func (c *Cluster) serveLeaseRelease(from string, d *dec) ([]byte, error) {
	shards := d.shards(c.cfg.Shards)
	if err := d.done("lease release"); err != nil {
		return nil, err
	}
	now := time.Now()
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	for _, sh := range shards {
		c.releaseGrantLocked(sh, from, now)
	}
	return nil, nil
}
