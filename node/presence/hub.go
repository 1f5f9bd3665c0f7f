// Package presence knows where clients are connected: a session registry
// per client shard (soft state on the shard's live replicas: which gateway
// nodes hold how many sessions of each client) and the push fan-out that
// uses it, so a push goes only to the gateways holding the recipients.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/transport"
	"github.com/imcluster/imcluster/node/wire"
)

// Gateway is what the hub needs from the node's gateway.
type Gateway interface {
	DeliverEncoded(app string, clientIDs []string, except conversation.SessionID, frame []byte)
	KickTag(app, clientID, tag, deviceID string, except conversation.SessionID)
	Kick(app, clientID string) int
}

// Peers is what the hub needs from the cluster.
type Peers interface {
	// Coordinators returns the live replicas of shard in preference order
	// (suspected ones last): they hold the shard's registry. The slice may
	// be shared: do not modify it.
	Coordinators(shard uint16) []string
	// LiveOthers returns the other live members.
	LiveOthers() []string
	NoteCall(peer string, err error)
	// Reachable reports whether peer is live and the last call to it
	// did not fail for want of a connection (it is not cut off from this
	// node). Called per push sent to another gateway: it must be cheap.
	Reachable(peer string) bool
	Call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error)
	Send(to string, method uint16, payload []byte) error
}

// Config configures a Hub.
type Config struct {
	// NodeID is this node's id. Required.
	NodeID string
	// ClientShard maps a client to its shard. Required.
	ClientShard func(app, clientID string) uint16
	// Peers is required.
	Peers Peers
	// Async runs a task in the background without blocking (dropped when
	// its queue is full). Required.
	Async func(func())
	// RequestTimeout bounds a registration or kick call to a peer. Zero
	// means 5s.
	RequestTimeout time.Duration
	// RegistryWarmup is how long after its first roster this node's registries
	// may still be refilling (the gateways' re-registrations it asked for
	// take up to a RequestTimeout each): meanwhile a push for a client
	// they know no session of is handed on to the next replica of the
	// client's shard. Zero means 2×RequestTimeout.
	RegistryWarmup time.Duration
	// Now is the clock the warm-up is measured with. Zero means time.Now.
	Now func() time.Time
	// Logger is the parent logger. Zero means slog.Default().
	Logger *slog.Logger
	// Registerer receives the presence metrics. Zero means not registered.
	Registerer prometheus.Registerer
}

// Hub is this node's presence: the registries of the client shards it
// replicates (registry.mu), its own session counts (localSessions.mu) and
// the push fan-out. It implements gateway.Presence and
// conversation.Deliverer. It runs no goroutine of its own beyond a login's
// registrations, which it sends in parallel and waits for (register):
// background work goes through Config.Async.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	gw    Gateway
	met   *metrics
	reg   registry
	local localSessions
	// boot is this process's random non-zero id, sent with every
	// registration (registry.rebooted).
	boot uint64
	// rosterSince is when the hub saw its first roster (Unix ns; 0: not
	// yet), the start of its registries' warm-up.
	rosterSince atomic.Int64
	// joining is the set of members in state joining in the last roster
	// (OnRoster), nil when there is none: relays go to them last
	// (relayNodes).
	joining atomic.Pointer[map[string]bool]

	ctx    context.Context //nolint:containedctx // lifetime context owned by the Hub, cancelled by Shutdown
	cancel context.CancelFunc
}

// New returns a Hub.
func New(cfg Config) (*Hub, error) {
	if cfg.NodeID == "" || cfg.ClientShard == nil || cfg.Peers == nil || cfg.Async == nil {
		return nil, errors.New("presence: NodeID, ClientShard, Peers and Async are required")
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.RegistryWarmup == 0 {
		cfg.RegistryWarmup = 2 * cfg.RequestTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{cfg: cfg, log: cfg.Logger.With("component", "presence"), met: m, ctx: ctx, cancel: cancel,
		boot: rand.Uint64() | 1} //nolint:gosec // an id telling restarts apart, not a secret
	h.reg.init()
	h.local.init()
	return h, nil
}

// SetGateway sets the node's gateway. Call before sessions open.
func (h *Hub) SetGateway(g Gateway) { h.gw = g }

// Shutdown cancels the calls in flight.
func (h *Hub) Shutdown() { h.cancel() }

// OnRoster notes the members still joining, forgets the gateways snap
// shows dead, asks the nodes that came
// alive in this node's view to register their sessions here again
// (wire.MsgReregister: a restarted registry starts empty, and a gateway
// that stalled may not have seen anything change) and, when the placement
// or liveness changed, registers this node's sessions again at the current
// registry holders.
func (h *Hub) OnRoster(snap *membership.Snapshot, reregister bool) {
	h.rosterSince.CompareAndSwap(0, h.cfg.Now().UnixNano())
	var joining map[string]bool
	for _, m := range snap.Members {
		if m.State == ring.StateJoining {
			if joining == nil {
				joining = map[string]bool{}
			}
			joining[m.ID] = true
		}
	}
	if joining == nil {
		h.joining.Store(nil)
	} else {
		h.joining.Store(&joining)
	}
	for _, node := range h.reg.forgetDead(snap, h.cfg.Now().UnixNano()) {
		_ = h.cfg.Peers.Send(node, wire.MsgReregister, nil)
	}
	if reregister {
		h.local.reregister(h, "")
	}
}

func (h *Hub) call(ctx context.Context, to string, method uint16, payload []byte) ([]byte, error) {
	out, err := h.cfg.Peers.Call(ctx, to, method, payload)
	return out, wire.Decode(err)
}

// Requests lists the peer requests the hub serves (HandleRequest).
var Requests = []uint16{wire.Online, wire.Register, wire.Kick}

// Messages lists the peer messages the hub serves (HandleMessage).
var Messages = []uint16{wire.MsgFanout, wire.MsgPush, wire.MsgKickTag, wire.MsgReregister}

// HandleRequest serves the presence requests.
func (h *Hub) HandleRequest(_ context.Context, req *transport.Request) ([]byte, error) {
	d := wire.Dec{B: req.Payload}
	switch req.Method {
	case wire.Online:
		app := d.Str()
		ids := d.Strs()
		if err := d.Done("online"); err != nil {
			return nil, err
		}
		var e wire.Enc
		e.Strs(h.reg.online(app, ids))
		return e.B, nil
	case wire.Register:
		return nil, h.reg.apply(h, req.From, &d)
	case wire.Kick:
		app, client := d.Str(), d.Str()
		if err := d.Done("kick"); err != nil {
			return nil, err
		}
		var e wire.Enc
		e.U64(uint64(h.gw.Kick(app, client)))
		return e.B, nil
	}
	return nil, fmt.Errorf("presence: unknown method %d", req.Method)
}

// HandleMessage serves the presence messages; it does not block.
func (h *Hub) HandleMessage(msg *transport.Message) error {
	d := wire.Dec{B: msg.Payload}
	switch msg.Method {
	case wire.MsgFanout:
		return h.serveFanout(&d)
	case wire.MsgPush:
		return h.servePush(&d)
	case wire.MsgKickTag:
		app, client, tag, device := d.Str(), d.Str(), d.Str(), d.Str()
		except := d.U64()
		err := d.Done("kick tag")
		if err == nil && h.gw != nil {
			// A kick revokes the session's token (a store write): not on
			// the connection's reader.
			h.cfg.Async(func() { h.gw.KickTag(app, client, tag, device, conversation.SessionID(except)) })
		}
		return err
	case wire.MsgReregister:
		if err := d.Done("reregister"); err != nil {
			return err
		}
		h.local.reregister(h, msg.From)
		return nil
	}
	return fmt.Errorf("presence: unknown message %d", msg.Method)
}

type metrics struct {
	registerErrors  prometheus.Counter
	pushDrops       prometheus.Counter
	pushCutOff      prometheus.Counter
	handOns         prometheus.Counter
	reregistrations prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		registerErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_presence_session_register_errors_total",
			Help: "Session registrations that did not reach the client shard's registry."}),
		pushDrops: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_presence_push_relay_drops_total",
			Help: "Pushes not relayed to another node (unreachable or its queue full)."}),
		pushCutOff: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_presence_pushes_to_cut_off_gateways_total",
			Help: "Pushes sent to a gateway node this node is cut off from (its last call there failed): likely lost."}),
		handOns: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_presence_handons_total",
			Help: "Pushes for clients this node's warming registry knew no session of, handed on to the next registry replica."}),
		reregistrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "imnode_presence_reregistrations_total",
			Help: "Batches of all this node's sessions registered again at a registry replica (roster change, asked, or reachable again)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.registerErrors, m.pushDrops, m.pushCutOff, m.handOns, m.reregistrations} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
