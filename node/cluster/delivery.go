package cluster

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// registry is the session registry of the client shards this node
// replicates: which gateway nodes have how many sessions of each client.
// Gateways register with every live replica of the client's shard, so any
// of them can route a push when another is down or unreachable. It is soft
// state: gateways re-register everything when the roster or liveness
// changes, and entries of dead gateways are dropped.
type registry struct {
	mu sync.Mutex
	// m maps app \x00 clientId to node id to session count.
	m map[string]map[string]int
}

func (r *registry) init() { r.m = map[string]map[string]int{} }

func regKey(app, client string) string { return app + "\x00" + client }

func (r *registry) set(app, client, node string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := regKey(app, client)
	if n <= 0 {
		if e := r.m[k]; e != nil {
			delete(e, node)
			if len(e) == 0 {
				delete(r.m, k)
			}
		}
		return
	}
	e := r.m[k]
	if e == nil {
		e = map[string]int{}
		r.m[k] = e
	}
	e[node] = n
}

// gateways returns the nodes holding sessions of client.
func (r *registry) gateways(app, client string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Keys(r.m[regKey(app, client)]))
}

func (r *registry) online(app string, ids []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range ids {
		if len(r.m[regKey(app, id)]) > 0 {
			out = append(out, id)
		}
	}
	return out
}

func (r *registry) forgetDead(snap *membership.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.m {
		for node := range e {
			if node != snap.Self && !snap.IsLive(node) {
				delete(e, node)
			}
		}
		if len(e) == 0 {
			delete(r.m, k)
		}
	}
}

// apply decodes an mRegister batch from node from: entries (app, client,
// count, tag, device, session); a non-empty tag asks the other gateways of
// the client to close sessions with the same tag.
func (r *registry) apply(c *Cluster, from string, d *dec) error {
	n := d.count()
	for range n {
		app, client := d.str(), d.str()
		count := int(d.u64())
		tag, device := d.str(), d.str()
		s := d.u64()
		if d.err != nil {
			break
		}
		if tag != "" {
			c.kickTag(app, client, tag, device, from, sessionID(s))
		}
		r.set(app, client, from, count)
	}
	return d.done("register")
}

// kickTag tells every gateway but from holding client's sessions to close
// those with tag.
func (c *Cluster) kickTag(app, client, tag, device, from string, except conversation.SessionID) {
	var e enc
	e.str(app)
	e.str(client)
	e.str(tag)
	e.str(device)
	e.u64(uint64(except))
	for _, node := range c.reg.gateways(app, client) {
		if node == from {
			continue
		}
		if node == c.cfg.NodeID {
			c.async(func() { c.gateway.KickTag(app, client, tag, device, except) })
			continue
		}
		_ = c.tr.Send(node, msgKickTag, e.b)
	}
}

// presence is this node's side of the registry: its own session counts per
// client, registered at each client shard's registry holder.
type presence struct {
	mu sync.Mutex
	m  map[string]int // app \x00 clientId -> sessions on this node
}

func (p *presence) init() { p.m = map[string]int{} }

// registryNodes returns the live replicas of a client shard, which hold its
// session registry: reachable ones first (see coordinators).
func (c *Cluster) registryNodes(shard uint16) []string { return c.coordinators(shard) }

// Presence returns the gateway.Presence of this node.
func (c *Cluster) Presence() *Presence { return (*Presence)(c) }

// Presence implements gateway.Presence.
type Presence Cluster

// Opened registers a new session synchronously (bounded by the request
// timeout): the login response waits, so pushes find the client by the
// time it acts.
func (p *Presence) Opened(app, clientID, tag, deviceID string, s conversation.SessionID) {
	c := (*Cluster)(p)
	c.presence.mu.Lock()
	k := regKey(app, clientID)
	c.presence.m[k]++
	n := c.presence.m[k]
	c.presence.mu.Unlock()
	c.register(app, clientID, n, tag, deviceID, s)
}

// Closed unregisters a session in the background.
func (p *Presence) Closed(app, clientID string, _ conversation.SessionID) {
	c := (*Cluster)(p)
	c.presence.mu.Lock()
	k := regKey(app, clientID)
	c.presence.m[k]--
	if c.presence.m[k] <= 0 {
		delete(c.presence.m, k)
	}
	c.presence.mu.Unlock()
	// The count is read again when the task runs: a login that happened
	// meanwhile registered a higher one synchronously, which must not be
	// overwritten by this older count.
	c.async(func() { c.register(app, clientID, c.presence.count(k), "", "", 0) })
}

func (p *presence) count(k string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[k]
}

// Online answers session/query from the client shards' registries.
func (p *Presence) Online(app string, ids []string) []string {
	return (*Cluster)(p).online(app, ids)
}

// register sends one registration to every registry replica of the
// client's shard: the first synchronously, the others in the background.
func (c *Cluster) register(app, clientID string, n int, tag, deviceID string, s conversation.SessionID) {
	nodes := c.registryNodes(c.ClientShard(app, clientID))
	var e enc
	e.u64(1)
	e.str(app)
	e.str(clientID)
	e.u64(uint64(max(n, 0)))
	e.str(tag)
	e.str(deviceID)
	e.u64(uint64(s))
	for i, node := range nodes {
		if i == 0 {
			c.sendRegistration(node, e.b)
		} else {
			c.async(func() { c.sendRegistration(node, e.b) })
		}
	}
}

// sendRegistration delivers an mRegister batch to node (applied here when
// node is this one).
func (c *Cluster) sendRegistration(node string, payload []byte) {
	if node == c.cfg.NodeID {
		_ = c.reg.apply(c, node, &dec{b: payload})
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.requestTimeout())
	defer cancel()
	_, err := c.tr.Call(ctx, node, mRegister, payload)
	c.noteCall(node, err)
	if err != nil {
		c.met.registerErrors.Inc()
		c.log.Debug("Registering sessions failed", "registry", node, "err", err)
	}
}

// reregister sends every local session count to the current registry
// holders, in the background (after roster or liveness changes).
func (p *presence) reregister(c *Cluster) {
	p.mu.Lock()
	snapshot := maps.Clone(p.m)
	p.mu.Unlock()
	c.async(func() {
		batches := map[string]*enc{}
		counts := map[string]uint64{}
		for k, n := range snapshot {
			i := strings.IndexByte(k, 0)
			app, client := k[:i], k[i+1:]
			for _, node := range c.registryNodes(c.ClientShard(app, client)) {
				b := batches[node]
				if b == nil {
					b = &enc{}
					batches[node] = b
				}
				counts[node]++
				b.str(app)
				b.str(client)
				b.u64(uint64(n))
				b.str("")
				b.str("")
				b.u64(0)
			}
		}
		for node, body := range batches {
			var e enc
			e.u64(counts[node])
			e.b = append(e.b, body.b...)
			c.sendRegistration(node, e.b)
		}
	})
}

// Deliverer returns the engine's Deliverer.
func (c *Cluster) Deliverer() conversation.Deliverer { return (*deliverer)(c) }

type deliverer Cluster

// Deliver implements conversation.Deliverer without blocking: recipients
// are grouped by a registry replica of their client shard (the first
// reachable one); local ones are looked up here and pushed to their
// gateways, remote ones are relayed to that replica (one message per
// replica), which pushes to the gateways. Each hop is an ordered peer
// connection, so one conversation's pushes keep their order. When a relay
// cannot be queued (the replica is down) the next replica is tried; if none
// takes it the push is dropped and the recipients catch up through unread
// counts and history, like offline clients.
func (dl *deliverer) Deliver(app string, clientIDs []string, except conversation.SessionID, cmd *pb.GenericCommand) {
	c := (*Cluster)(dl)
	if cmd.PeerId != nil || cmd.I != nil || cmd.Service == nil {
		cmd = proto.CloneOf(cmd)
		cmd.PeerId, cmd.I = nil, nil
		if cmd.Service == nil {
			cmd.Service = proto.Int32(protocol.ServiceIM)
		}
	}
	frame, err := proto.Marshal(cmd)
	if err != nil {
		c.log.Error("Dropping unencodable push", "err", err)
		return
	}
	byShard := map[uint16][]string{}
	for _, id := range clientIDs {
		shard := c.ClientShard(app, id)
		byShard[shard] = append(byShard[shard], id)
	}
	for shard, ids := range byShard {
		c.relay(app, c.registryNodes(shard), ids, except, frame)
	}
}

// relay hands a push for ids to the first registry replica that takes it.
func (c *Cluster) relay(app string, replicas, ids []string, except conversation.SessionID, frame []byte) {
	for _, node := range replicas {
		if node == c.cfg.NodeID {
			c.fanout(app, ids, except, frame)
			return
		}
		err := c.tr.Send(node, msgFanout, pushPayload(app, ids, except, frame))
		c.noteCall(node, err)
		if err == nil {
			return
		}
	}
	c.met.pushDrops.Inc()
}

func pushPayload(app string, ids []string, except conversation.SessionID, frame []byte) []byte {
	var e enc
	e.str(app)
	e.strs(ids)
	e.u64(uint64(except))
	e.bytes(frame)
	return e.b
}

// fanout pushes frame to the gateways holding sessions of ids (this node
// holds their registry).
func (c *Cluster) fanout(app string, ids []string, except conversation.SessionID, frame []byte) {
	byNode := map[string][]string{}
	for _, id := range ids {
		for _, node := range c.reg.gateways(app, id) {
			byNode[node] = append(byNode[node], id)
		}
	}
	for node, ids := range byNode {
		if node == c.cfg.NodeID {
			c.gateway.DeliverEncoded(app, ids, except, frame)
			continue
		}
		if err := c.tr.Send(node, msgPush, pushPayload(app, ids, except, frame)); err != nil {
			c.met.pushDrops.Inc()
		}
	}
}

func decodePush(d *dec) (string, []string, conversation.SessionID, []byte, error) {
	app := d.str()
	ids := d.strs()
	except := sessionID(d.u64())
	frame := d.bytes()
	return app, ids, except, frame, d.done("push")
}

func (c *Cluster) serveFanout(d *dec) error {
	app, ids, except, frame, err := decodePush(d)
	if err == nil {
		c.fanout(app, ids, except, frame)
	}
	return err
}

func (c *Cluster) servePush(d *dec) error {
	app, ids, except, frame, err := decodePush(d)
	if err == nil {
		c.gateway.DeliverEncoded(app, ids, except, frame)
	}
	return err
}

// Online implements conversation.Deliverer: asks the registry holders.
func (dl *deliverer) Online(app string, clientIDs []string) []string {
	return (*Cluster)(dl).online(app, clientIDs)
}

// onlineAt asks the first registry replica of shard that answers.
func (c *Cluster) onlineAt(app string, shard uint16, ids []string) []string {
	for _, node := range c.registryNodes(shard) {
		if node == c.cfg.NodeID {
			return c.reg.online(app, ids)
		}
		var e enc
		e.str(app)
		e.strs(ids)
		ctx, cancel := context.WithTimeout(c.ctx, time.Second)
		resp, err := c.tr.Call(ctx, node, mOnline, e.b)
		cancel()
		c.noteCall(node, err)
		if err != nil {
			continue
		}
		d := dec{b: resp}
		got := d.strs()
		if d.done("online") == nil {
			return got
		}
	}
	return nil
}

func (c *Cluster) online(app string, clientIDs []string) []string {
	byShard := map[uint16][]string{}
	for _, id := range clientIDs {
		shard := c.ClientShard(app, id)
		byShard[shard] = append(byShard[shard], id)
	}
	var out []string
	for shard, ids := range byShard {
		out = append(out, c.onlineAt(app, shard, ids)...)
	}
	// Keep the callers' order.
	set := map[string]bool{}
	for _, id := range out {
		set[id] = true
	}
	return slices.DeleteFunc(slices.Clone(clientIDs), func(id string) bool { return !set[id] })
}

// Kick closes every session of a client on every live node (the REST
// server API's kick; rare, so it asks all nodes) and returns how many
// sessions were closed.
func (c *Cluster) Kick(app, clientID string) int {
	n := c.gateway.Kick(app, clientID)
	var e enc
	e.str(app)
	e.str(clientID)
	for _, m := range c.snap.Load().Members {
		if m.ID == c.cfg.NodeID || !m.Live {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.requestTimeout())
		resp, err := c.tr.Call(ctx, m.ID, mKick, e.b)
		cancel()
		if err != nil {
			c.log.Warn("Kicking a client on a peer failed", "peer", m.ID, "client", clientID, "err", err)
			continue
		}
		d := dec{b: resp}
		k := d.u64()
		if d.done("kick") == nil {
			n += int(k)
		}
	}
	return n
}
