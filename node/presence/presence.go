package presence

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
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/wire"
)

// deadGatewayGrace is how long the entries of a gateway that the
// failure detector declared dead (a member still, not left) keep routing
// pushes: a gateway that stalled past the detector's timeout (a long GC
// or VM pause, a gossip hiccup) still has its clients' sockets and the
// peer connections to it, and the pushes queued on them reach its clients
// when it resumes; dropping its entries at once lost every push between
// the declaration and its re-registration. A gateway that really died
// refuses them at once (its peer connection is down: the send fails,
// counted in imnode_presence_push_relay_drops_total), and one that
// restarted drops them with its first registration (a new boot id). 30 s
// is many failure-detector timeouts, and far less than a client's 380 s
// socket liveness.
const deadGatewayGrace = 30 * time.Second

// registry is the session registry of the client shards this node
// replicates: which gateway nodes have how many sessions of each client.
// Gateways register with every live replica of the client's shard, so any
// of them can route a push when another is down or unreachable. It is soft
// state: gateways re-register everything when the roster or liveness
// changes; the entries of a gateway declared dead route pushes only for
// deadGatewayGrace, count as offline at once, and are dropped after the
// grace (or at once when it left the roster or is unknown); and a gateway
// this node sees come alive (again, or for the first time since this node
// started) is asked to register its sessions here again
// (wire.MsgReregister): its own view may have seen nothing change (it
// stalled, or this node restarted faster than gossip noticed), so it would
// not re-register on its own.
type registry struct {
	mu sync.Mutex
	// m maps app \x00 clientId to node id to session count.
	m map[string]map[string]int
	// live is the set of other nodes live in the last snapshot seen
	// (forgetDead); one entry per member, so bounded by the roster.
	live map[string]bool
	// dead maps each member the last snapshot showed dead (not left) to
	// when this registry first saw it dead (Unix ns); one entry per
	// member.
	dead map[string]int64
	// boots maps each gateway to the boot id its last registration
	// carried: a new one means the gateway restarted, and the sessions it
	// registered before are gone. One entry per member whose entries are
	// kept.
	boots map[string]uint64
}

func (r *registry) init() {
	r.m, r.live, r.dead, r.boots = map[string]map[string]int{}, map[string]bool{}, map[string]int64{}, map[string]uint64{}
}

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

// gateways returns the live nodes holding sessions of client.
func (r *registry) gateways(app, client string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for node := range r.m[regKey(app, client)] {
		if _, dead := r.dead[node]; !dead {
			out = append(out, node)
		}
	}
	return out
}

// route groups ids by the nodes holding their sessions at now (a gateway
// declared dead for less than deadGatewayGrace included), under one lock
// for the whole push (a chat room's has as many ids as the room has
// members), and returns the ids of no such node apart.
func (r *registry) route(app string, ids []string, now int64) (byNode map[string][]string, unknown []string) {
	byNode = map[string][]string{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		found := false
		for node := range r.m[regKey(app, id)] {
			if r.routesLocked(node, now) {
				byNode[node] = append(byNode[node], id)
				found = true
			}
		}
		if !found {
			unknown = append(unknown, id)
		}
	}
	return byNode, unknown
}

func (r *registry) online(app string, ids []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range ids {
		for node := range r.m[regKey(app, id)] {
			if _, dead := r.dead[node]; !dead {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// forgetDead notes the gateways snap shows dead and when this registry
// first saw them so, drops the entries of those dead for longer than
// deadGatewayGrace and of those snap does not know or shows left, and
// returns the other nodes live in snap that were not live in the previous
// snapshot: the gateways to ask to register here again.
func (r *registry) forgetDead(snap *membership.Snapshot, now int64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	dead := make(map[string]int64, len(r.dead))
	for _, m := range snap.Members {
		if m.ID == snap.Self || m.Live || m.State == ring.StateLeft {
			continue
		}
		since, ok := r.dead[m.ID]
		if !ok {
			since = now
		}
		dead[m.ID] = since
	}
	r.dead = dead
	keep := func(node string) bool {
		since, dead := r.dead[node]
		return node == snap.Self || snap.IsLive(node) || dead && now-since < int64(deadGatewayGrace)
	}
	for k, e := range r.m {
		for node := range e {
			if !keep(node) {
				delete(e, node)
			}
		}
		if len(e) == 0 {
			delete(r.m, k)
		}
	}
	for node := range r.boots {
		if !keep(node) {
			delete(r.boots, node)
		}
	}
	var revived []string
	live := make(map[string]bool, len(snap.Members))
	for _, m := range snap.Members {
		if m.ID == snap.Self || !m.Live {
			continue
		}
		live[m.ID] = true
		if !r.live[m.ID] {
			revived = append(revived, m.ID)
		}
	}
	r.live = live
	return revived
}

// routesLocked reports whether the entries of node route pushes at now:
// it is not dead, or dead for less than deadGatewayGrace. r.mu is held.
func (r *registry) routesLocked(node string, now int64) bool {
	since, dead := r.dead[node]
	return !dead || now-since < int64(deadGatewayGrace)
}

// regEntry is one entry of a wire.Register batch.
type regEntry struct {
	app, client, tag, device string
	count                    int
	session                  conversation.SessionID
}

// apply decodes an wire.Register batch from node from: entries (app, client,
// count, tag, device, session), then the gateway's boot id (absent from
// earlier builds); a non-empty tag asks the other gateways of the client to
// close sessions with the same tag. A boot id other than the last one from
// from first drops every entry of from: the gateway restarted, and the
// sessions it registered before are gone. A malformed batch applies nothing.
func (r *registry) apply(h *Hub, from string, d *wire.Dec) error {
	n := d.Count()
	entries := make([]regEntry, 0, n)
	for range n {
		e := regEntry{app: d.Str(), client: d.Str(), count: int(d.U64())}
		e.tag, e.device = d.Str(), d.Str()
		e.session = conversation.SessionID(d.U64())
		entries = append(entries, e)
	}
	var boot uint64
	if len(d.B) > 0 {
		boot = d.U64()
	}
	if err := d.Done("register"); err != nil {
		return err
	}
	if boot != 0 {
		r.rebooted(from, boot)
	}
	for _, e := range entries {
		if e.tag != "" {
			h.kickTag(e.app, e.client, e.tag, e.device, from, e.session)
		}
		r.set(e.app, e.client, from, e.count)
	}
	return nil
}

// rebooted records gateway's boot id and, when it differs from the last
// one, drops every entry of gateway.
func (r *registry) rebooted(gateway string, boot uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.boots[gateway] == boot {
		return
	}
	r.boots[gateway] = boot
	for k, e := range r.m {
		delete(e, gateway)
		if len(e) == 0 {
			delete(r.m, k)
		}
	}
}

// kickTag tells every gateway but from holding client's sessions to close
// those with tag.
func (h *Hub) kickTag(app, client, tag, device, from string, except conversation.SessionID) {
	var e wire.Enc
	e.Str(app)
	e.Str(client)
	e.Str(tag)
	e.Str(device)
	e.U64(uint64(except))
	for _, node := range h.reg.gateways(app, client) {
		if node == from {
			continue
		}
		if node == h.cfg.NodeID {
			h.cfg.Async(func() { h.gw.KickTag(app, client, tag, device, except) })
			continue
		}
		_ = h.cfg.Peers.Send(node, wire.MsgKickTag, e.B)
	}
}

// localSessions is this node's side of the registry: its own session counts per
// client, registered at each client shard's registry holder.
type localSessions struct {
	mu sync.Mutex
	m  map[string]int // app \x00 clientId -> sessions on this node
	// owed holds the registry nodes a registration of ours failed to
	// reach: they get all our sessions again once a call or probe reaches
	// them (Hub.Reachable). One entry per peer at most.
	owed map[string]bool
}

func (p *localSessions) init() { p.m, p.owed = map[string]int{}, map[string]bool{} }

// registryNodes returns the live replicas of a client shard, which hold its
// session registry: reachable ones first (see coordinators).
func (h *Hub) registryNodes(shard uint16) []string { return h.cfg.Peers.Coordinators(shard) }

// relayNodes returns the registry replicas of shard to relay a push or an
// online query to, in order: registryNodes with the replicas still joining
// last. A node that just joined is placed at once, so other nodes see it
// as a replica before it has heard of them: until then it refuses their
// peer messages (the node's peer authorization), and a push relayed to it
// is lost. It turns active only once it knows the roster and caught up.
// The path to a client changes when it does, a roster change like any
// other.
func (h *Hub) relayNodes(shard uint16) []string {
	nodes := h.registryNodes(shard)
	jp := h.joining.Load()
	if jp == nil {
		return nodes
	}
	joining := *jp
	if !slices.ContainsFunc(nodes, func(n string) bool { return joining[n] }) {
		return nodes
	}
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if !joining[n] {
			out = append(out, n)
		}
	}
	for _, n := range nodes {
		if joining[n] {
			out = append(out, n)
		}
	}
	return out
}

// Opened registers a new session synchronously (bounded by the request
// timeout): the login response waits, so pushes find the client by the
// time it acts.
func (h *Hub) Opened(app, clientID, tag, deviceID string, s conversation.SessionID) {
	h.local.mu.Lock()
	k := regKey(app, clientID)
	h.local.m[k]++
	n := h.local.m[k]
	h.local.mu.Unlock()
	h.register(app, clientID, n, tag, deviceID, s)
}

// Closed unregisters a session in the background.
func (h *Hub) Closed(app, clientID string, _ conversation.SessionID) {
	h.local.mu.Lock()
	k := regKey(app, clientID)
	h.local.m[k]--
	if h.local.m[k] <= 0 {
		delete(h.local.m, k)
	}
	h.local.mu.Unlock()
	// The count is read again when the task runs: a login that happened
	// meanwhile registered a higher one synchronously, which must not be
	// overwritten by this older count.
	h.cfg.Async(func() { h.register(app, clientID, h.local.count(k), "", "", 0) })
}

func (p *localSessions) count(k string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[k]
}

// Online implements gateway.Presence and conversation.Deliverer: it asks
// the client shards' registries (session/query, offline checks).
func (h *Hub) Online(app string, ids []string) []string {
	return h.online(app, ids)
}

// register sends one registration to every registry replica of the
// client's shard, in parallel, and returns once each has answered or failed
// (each bounded by Config.RequestTimeout): every replica's registry knows
// the session before the login is answered, so any of them can route a push
// to it (Deliver uses whichever replica is this node).
func (h *Hub) register(app, clientID string, n int, tag, deviceID string, s conversation.SessionID) {
	nodes := h.registryNodes(h.cfg.ClientShard(app, clientID))
	var e wire.Enc
	e.U64(1)
	e.Str(app)
	e.Str(clientID)
	e.U64(uint64(max(n, 0)))
	e.Str(tag)
	e.Str(deviceID)
	e.U64(uint64(s))
	e.U64(h.boot)
	if len(nodes) == 1 {
		h.sendRegistration(nodes[0], e.B)
		return
	}
	var wg sync.WaitGroup
	for _, node := range nodes {
		wg.Go(func() { h.sendRegistration(node, e.B) })
	}
	wg.Wait()
}

// sendRegistration delivers an wire.Register batch to node (applied here when
// node is this one).
func (h *Hub) sendRegistration(node string, payload []byte) {
	if node == h.cfg.NodeID {
		_ = h.reg.apply(h, node, &wire.Dec{B: payload})
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.RequestTimeout)
	defer cancel()
	_, err := h.call(ctx, node, wire.Register, payload)
	if err != nil {
		h.local.mu.Lock()
		h.local.owed[node] = true
		h.local.mu.Unlock()
	}
	h.cfg.Peers.NoteCall(node, err)
	if err != nil {
		h.met.registerErrors.Inc()
		h.log.Debug("Registering sessions failed", "registry", node, "err", err)
	}
}

// Reachable is told of each call or probe that reached peer: if a
// registration of ours failed to reach it, all our sessions are registered
// there again, so a registry replica that was cut off or down while a
// session opened learns it without waiting for a roster change.
func (h *Hub) Reachable(peer string) {
	h.local.mu.Lock()
	owed := h.local.owed[peer]
	delete(h.local.owed, peer)
	h.local.mu.Unlock()
	if owed {
		h.local.reregister(h, peer)
	}
}

// reregister sends every local session count to the current registry
// holders, in the background (after roster or liveness changes). A
// non-empty only limits it to the registries held by that node (it asked,
// wire.MsgReregister).
func (p *localSessions) reregister(h *Hub, only string) {
	p.mu.Lock()
	snapshot := maps.Clone(p.m)
	p.mu.Unlock()
	h.cfg.Async(func() {
		batches := map[string]*wire.Enc{}
		counts := map[string]uint64{}
		if only == "" {
			// Every live peer hears this node's boot id, even with no
			// session to register there: a restarted node's earlier
			// sessions are dropped.
			for _, node := range h.cfg.Peers.LiveOthers() {
				batches[node] = &wire.Enc{}
			}
		}
		for k, n := range snapshot {
			i := strings.IndexByte(k, 0)
			app, client := k[:i], k[i+1:]
			for _, node := range h.registryNodes(h.cfg.ClientShard(app, client)) {
				if only != "" && node != only {
					continue
				}
				b := batches[node]
				if b == nil {
					b = &wire.Enc{}
					batches[node] = b
				}
				counts[node]++
				b.Str(app)
				b.Str(client)
				b.U64(uint64(n))
				b.Str("")
				b.Str("")
				b.U64(0)
			}
		}
		for node, body := range batches {
			var e wire.Enc
			e.U64(counts[node])
			e.B = append(e.B, body.B...)
			e.U64(h.boot)
			h.met.reregistrations.Inc()
			h.sendRegistration(node, e.B)
		}
	})
}

// Deliver implements conversation.Deliverer without blocking: recipients
// are grouped by a registry replica of their client shard. The ones whose
// client shard this node replicates (any live replica, not only the first:
// every replica's registry learnt each session before its login was
// answered, see register) are looked up here and pushed straight to their
// gateways, one hop fewer; the others are relayed to the first reachable
// replica (one message per replica; replicas still joining last, see
// relayNodes), which pushes to the gateways. Each hop
// is an ordered peer connection, and the path from this node to a client
// stays the same while the roster and liveness do, so one conversation's
// pushes keep their order. When a relay cannot be queued (the replica is
// down) the next replica is tried; if none takes it the push is dropped and
// the recipients catch up through unread counts and history, like offline
// clients.
func (h *Hub) Deliver(app string, clientIDs []string, except conversation.SessionID, cmd *pb.GenericCommand) {
	if cmd.PeerId != nil || cmd.I != nil || cmd.Service == nil {
		cmd = proto.CloneOf(cmd)
		cmd.PeerId, cmd.I = nil, nil
		if cmd.Service == nil {
			cmd.Service = proto.Int32(protocol.ServiceIM)
		}
	}
	frame, err := proto.Marshal(cmd)
	if err != nil {
		h.log.Error("Dropping unencodable push", "err", err)
		return
	}
	// The recipients whose registry this node holds (it is a live
	// replica of their client shard) are looked up in one fan-out; the
	// others are relayed per shard.
	var local []string
	byShard := map[uint16][]string{}
	for _, id := range clientIDs {
		shard := h.cfg.ClientShard(app, id)
		byShard[shard] = append(byShard[shard], id)
	}
	for shard, ids := range byShard {
		if slices.Contains(h.registryNodes(shard), h.cfg.NodeID) {
			local = append(local, ids...)
			continue
		}
		h.relay(app, h.relayNodes(shard), ids, except, frame)
	}
	if len(local) > 0 {
		h.fanout(app, local, except, frame, false)
	}
}

// relay hands a push for ids to the first registry replica that takes it.
func (h *Hub) relay(app string, replicas, ids []string, except conversation.SessionID, frame []byte) {
	for _, node := range replicas {
		if node == h.cfg.NodeID {
			h.fanout(app, ids, except, frame, false)
			return
		}
		err := h.cfg.Peers.Send(node, wire.MsgFanout, pushPayload(app, ids, except, frame))
		h.cfg.Peers.NoteCall(node, err)
		if err == nil {
			return
		}
	}
	h.met.pushDrops.Inc()
}

func pushPayload(app string, ids []string, except conversation.SessionID, frame []byte) []byte {
	var e wire.Enc
	e.Str(app)
	e.Strs(ids)
	e.U64(uint64(except))
	e.Bytes(frame)
	return e.B
}

// fanout pushes frame to the gateways holding sessions of ids (this node
// holds their registry). While this node's registry may still be refilling
// after its start (Config.RegistryWarmup), the ids it knows no gateway of
// are handed on once to the next replica of their client shard (handed:
// this push was handed on already, so it goes no further).
func (h *Hub) fanout(app string, ids []string, except conversation.SessionID, frame []byte, handed bool) {
	byNode, unknown := h.reg.route(app, ids, h.cfg.Now().UnixNano())
	if len(unknown) > 0 && !handed && h.warming() {
		h.handOn(app, unknown, except, frame)
	}
	for node, ids := range byNode {
		if node == h.cfg.NodeID {
			h.gw.DeliverEncoded(app, ids, except, frame)
			continue
		}
		if err := h.cfg.Peers.Send(node, wire.MsgPush, pushPayload(app, ids, except, frame)); err != nil {
			h.met.pushDrops.Inc()
		} else if !h.cfg.Peers.Reachable(node) {
			// Sent all the same (the link may be back; the push keeps
			// its place in the connection's order), but a connection
			// that stays open across a cut loses it without an error:
			// counted so that the loss is seen.
			h.met.pushCutOff.Inc()
		}
	}
}

// warming reports whether this node saw its first roster less than
// Config.RegistryWarmup ago (or none yet): the gateways' re-registrations
// it asked for may still be on their way.
func (h *Hub) warming() bool {
	since := h.rosterSince.Load()
	return since == 0 || h.cfg.Now().UnixNano()-since < int64(h.cfg.RegistryWarmup)
}

// handOn relays a push for ids, which this node's registry does not know
// yet, to the first other replica of each one's client shard, marked
// handed on (one extra message per push, and only while warming).
func (h *Hub) handOn(app string, ids []string, except conversation.SessionID, frame []byte) {
	byShard := map[uint16][]string{}
	for _, id := range ids {
		shard := h.cfg.ClientShard(app, id)
		byShard[shard] = append(byShard[shard], id)
	}
	for shard, ids := range byShard {
		for _, node := range h.relayNodes(shard) {
			if node == h.cfg.NodeID {
				continue
			}
			b := pushPayload(app, ids, except, frame)
			b = append(b, 1) // handed on (a trailing field: earlier builds ignore it)
			if err := h.cfg.Peers.Send(node, wire.MsgFanout, b); err != nil {
				h.met.pushDrops.Inc()
			} else {
				h.met.handOns.Inc()
			}
			break
		}
	}
}

func decodePush(d *wire.Dec) (string, []string, conversation.SessionID, []byte, error) {
	app := d.Str()
	ids := d.Strs()
	except := conversation.SessionID(d.U64())
	frame := d.Bytes()
	return app, ids, except, frame, d.Done("push")
}

func (h *Hub) serveFanout(d *wire.Dec) error {
	app, ids, except, frame, err := decodePush(d)
	if err == nil {
		handed := len(d.B) > 0 && d.Bool()
		h.fanout(app, ids, except, frame, handed)
	}
	return err
}

func (h *Hub) servePush(d *wire.Dec) error {
	app, ids, except, frame, err := decodePush(d)
	if err == nil {
		h.gw.DeliverEncoded(app, ids, except, frame)
	}
	return err
}

// onlineAt answers from this node's registry when this node is a live
// replica of shard (every replica learnt each session before its login was
// answered, see register), and otherwise asks the first registry replica
// of shard that answers.
func (h *Hub) onlineAt(app string, shard uint16, ids []string) []string {
	if slices.Contains(h.registryNodes(shard), h.cfg.NodeID) {
		return h.reg.online(app, ids)
	}
	for _, node := range h.relayNodes(shard) {
		var e wire.Enc
		e.Str(app)
		e.Strs(ids)
		ctx, cancel := context.WithTimeout(h.ctx, time.Second)
		resp, err := h.call(ctx, node, wire.Online, e.B)
		cancel()
		h.cfg.Peers.NoteCall(node, err)
		if err != nil {
			continue
		}
		d := wire.Dec{B: resp}
		got := d.Strs()
		if d.Done("online") == nil {
			return got
		}
	}
	return nil
}

func (h *Hub) online(app string, clientIDs []string) []string {
	byShard := map[uint16][]string{}
	for _, id := range clientIDs {
		shard := h.cfg.ClientShard(app, id)
		byShard[shard] = append(byShard[shard], id)
	}
	var out []string
	for shard, ids := range byShard {
		out = append(out, h.onlineAt(app, shard, ids)...)
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
func (h *Hub) Kick(app, clientID string) int {
	n := h.gw.Kick(app, clientID)
	var e wire.Enc
	e.Str(app)
	e.Str(clientID)
	for _, id := range h.cfg.Peers.LiveOthers() {
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.RequestTimeout)
		resp, err := h.call(ctx, id, wire.Kick, e.B)
		cancel()
		if err != nil {
			h.log.Warn("Kicking a client on a peer failed", "peer", id, "client", clientID, "err", err)
			continue
		}
		d := wire.Dec{B: resp}
		k := d.U64()
		if d.Done("kick") == nil {
			n += int(k)
		}
	}
	return n
}
