package cluster

import (
	"context"
	"time"

	"github.com/imcluster/imcluster/node/presence"
	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/route"
)

// The cluster is the roster the replica, route and presence packages see
// through their own small Peers interfaces.
var (
	_ replica.Peers  = (*Cluster)(nil)
	_ route.Peers    = (*Cluster)(nil)
	_ presence.Peers = (*Cluster)(nil)
)

// Live reports gossip liveness (self is always live).
func (c *Cluster) Live(id string) bool { return c.live(id) }

// MemberActive reports whether id is live, not suspected and announced active.
func (c *Cluster) MemberActive(id string) bool {
	if !c.live(id) || c.suspected(id) {
		return false
	}
	for _, m := range c.snap.Load().Members {
		if m.ID == id {
			return m.State == ring.StateActive
		}
	}
	return false
}

// Coordinators returns the live replicas of shard in preference order
// (suspected ones last). The slice may be shared: do not modify it.
func (c *Cluster) Coordinators(shard uint16) []string { return c.coordinators(shard) }

// Suspected reports whether a recent call to peer failed.
func (c *Cluster) Suspected(peer string) bool { return c.suspected(peer) }

// Reachable reports whether id is live and was not cut off by the last call
// to it.
func (c *Cluster) Reachable(id string) bool {
	if !c.live(id) {
		return false
	}
	if c.cutOffs.Load() == 0 {
		return true
	}
	c.suspectMu.Lock()
	defer c.suspectMu.Unlock()
	_, cut := c.cutOff[id]
	return !cut
}

// NoteCall records the outcome of a call to peer.
func (c *Cluster) NoteCall(peer string, err error) { c.noteCall(peer, err) }

// Call sends a request to a peer over the transport.
func (c *Cluster) Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	return c.tr.Call(ctx, to, method, payload)
}

// CallFunc sends a request to a peer over the transport; done gets the
// answer.
func (c *Cluster) CallFunc(to string, method uint16, payload []byte, timeout time.Duration, done func([]byte, error)) {
	c.tr.CallFunc(to, method, payload, timeout, done)
}

// Send sends a one-way message to a peer.
func (c *Cluster) Send(to string, method uint16, payload []byte) error {
	return c.tr.Send(to, method, payload)
}

// Draining reports whether this node drains.
func (c *Cluster) Draining() bool { return c.draining.Load() }

// CaughtUp announces this node active (its first catch-up is done).
func (c *Cluster) CaughtUp() error {
	if err := c.ml.SetState(ring.StateActive); err != nil {
		return err
	}
	c.active.Store(true)
	return nil
}

// Owners returns the other live members that own shards.
func (c *Cluster) Owners() []string {
	var out []string
	for _, m := range c.snap.Load().Members {
		if m.ID != c.cfg.NodeID && m.Live && m.State.Owns() {
			out = append(out, m.ID)
		}
	}
	return out
}

// LiveOthers returns the other live members.
func (c *Cluster) LiveOthers() []string {
	var out []string
	for _, m := range c.snap.Load().Members {
		if m.ID != c.cfg.NodeID && m.Live {
			out = append(out, m.ID)
		}
	}
	return out
}
