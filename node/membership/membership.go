package membership

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imcluster/imcluster/node/ring"
)

// Log names.
const (
	logComponent = "membership"
	keyNode      = "node"
	keyErr       = "err"
	keyEpoch     = "epoch"
)

// Errors of state changes.
var (
	ErrInvalidTransition = errors.New("membership: invalid state transition")
	ErrUnknownNode       = errors.New("membership: unknown node")
	ErrNotStarted        = errors.New("membership: not started")
	ErrRemoveSelf        = errors.New("membership: cannot remove self")
	ErrShutdown          = errors.New("membership: shut down")
)

// Membership runs one node's gossip membership. Create it with New, Start
// it, read Snapshot, and Shutdown when done. All methods are safe for
// concurrent use.
//
// The roster table and this node's entry are guarded by mu; memberlist
// delegates take mu briefly and never call back into memberlist. The loop
// goroutine (owned by Membership, stopped by Shutdown) coalesces events and
// publishes Snapshots.
type Membership struct {
	cfg    Config
	log    *slog.Logger
	ml     *memberlist.Memberlist
	queue  *memberlist.TransmitLimitedQueue
	snap   atomic.Pointer[Snapshot]
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// linger bounds Shutdown's wait for memberlist's goroutines
	// (linger.go); set by Start.
	linger time.Duration

	// events signals the loop that something changed. Capacity 1: a
	// signal already pending covers any number of new events, because the
	// loop rebuilds the snapshot from the full state.
	events chan struct{}
	// changes tells the owner a new Snapshot is published; capacity 1,
	// same reasoning.
	changes chan struct{}
	// metaDirty asks the loop to re-announce this node's meta (after a
	// merge adopted or bumped its seq).
	metaDirty atomic.Bool
	// joined is set once a seed answered (or there are no seeds).
	joined atomic.Bool
	// addr is the gossip address, set by Start (under mu: delegates read
	// it).
	addr string
	// down is set by Shutdown; memberlist must not be used afterwards.
	down atomic.Bool
	// refused is closed, and refusedErr set, when a join was refused for
	// good (checks.go).
	refused    chan struct{}
	refusedErr atomic.Pointer[error]
	// learned); reported is the last one reported, owned by the loop.
	reported Identity

	mu sync.Mutex
	// fresh is true from New until the first successful Join when the node
	// started in state joining: it is a new incarnation of its id (empty
	// disk, the replace path) and overrides an old "left" entry.
	fresh bool
	// self is this node's own entry; table[cfg.NodeID] mirrors it.
	self  entry
	table map[string]entry
	// metas holds the last meta seen per node (addresses, version).
	metas map[string]Meta
	// live maps each node memberlist reports alive to its gossip address
	// (host:port), for the duplicate id check.
	live map[string]string
	// leftSince is when publish first saw each left, not live node.
	leftSince map[string]time.Time
	// duplicateSince is when a join was first refused for a duplicate id.
	duplicateSince time.Time
	// refusals holds the refusals already logged at warn level (bounded by
	// maxRefusalsLogged).
	refusals map[string]bool
}

// New validates cfg. Nothing listens until Start.
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Membership{
		cfg:       cfg,
		log:       cfg.Logger.With("component", logComponent),
		events:    make(chan struct{}, 1),
		changes:   make(chan struct{}, 1),
		self:      entry{State: cfg.State, Seq: 1},
		table:     map[string]entry{},
		metas:     map[string]Meta{},
		live:      map[string]string{},
		leftSince: map[string]time.Time{},
		refusals:  map[string]bool{},
		refused:   make(chan struct{}),
		reported:  Identity{ClusterID: cfg.ClusterID},
	}
	m.fresh = cfg.State == ring.StateJoining
	m.table[cfg.NodeID] = m.self
	m.metas[cfg.NodeID] = cfg.meta(m.self.State, m.self.Seq)
	m.snap.Store(&Snapshot{Self: cfg.NodeID})
	return m, nil
}

// Start creates the memberlist (binding the gossip port), publishes a
// first Snapshot, starts the loop and joins the seeds (retrying in the
// background if none answers).
func (m *Membership) Start() error {
	mc := m.cfg.memberlistConfig()
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	mc.Alive = (*alive)(m)
	mc.Merge = (*merge)(m)
	mc.Conflict = (*conflict)(m)
	mc.Logger = log.New(logBridge{log: m.log, down: &m.down}, "", 0)
	ml, err := m.createLabelled(mc)
	if err != nil {
		return fmt.Errorf("membership: create memberlist: %w", err)
	}
	m.ml = ml
	m.linger = lingerBound(mc)
	// memberlist rewrites its local node record on every update: read
	// the address once, before anything updates it.
	addr := ml.LocalNode().Address()
	m.mu.Lock()
	m.addr = addr
	m.mu.Unlock()
	m.queue = &memberlist.TransmitLimitedQueue{NumNodes: ml.NumMembers, RetransmitMult: mc.RetransmitMult}
	m.publish()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.joined.Store(len(m.cfg.Seeds) == 0)
	m.goFunc(func() { m.loop(ctx) })
	if len(m.cfg.Seeds) > 0 {
		m.tryJoin()
	}
	return nil
}

func (m *Membership) goFunc(f func()) {
	m.wg.Go(f)
}

// Addr returns the gossip address other nodes use as a seed (host:port).
func (m *Membership) Addr() string { return m.addr }

// Snapshot returns the latest published view. It is immutable and shared;
// do not modify it.
func (m *Membership) Snapshot() *Snapshot { return m.snap.Load() }

// Changes receives a value after each newly published Snapshot. A missed
// signal is never lost: one pending value covers any number of updates;
// read Snapshot after receiving.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

// ResolvePeer returns the peer transport address node id gossips, from the
// current Snapshot. Its signature matches transport.Resolver, so the owner
// can pass m.ResolvePeer to the transport without this package importing it.
func (m *Membership) ResolvePeer(id string) (string, error) {
	mm, ok := m.Snapshot().Member(id)
	switch {
	case !ok:
		return "", fmt.Errorf("%w: %q", ErrUnknownNode, id)
	case mm.PeerAddr == "":
		return "", fmt.Errorf("membership: node %q gossips no peer address", id)
	}
	return mm.PeerAddr, nil
}

// Joined reports whether a seed answered (always true without seeds).
func (m *Membership) Joined() bool { return m.joined.Load() }

// Join contacts the given gossip addresses now and returns how many
// answered.
func (m *Membership) Join(addrs []string) (int, error) {
	if err := m.usable(); err != nil {
		return 0, err
	}
	n, err := m.ml.Join(addrs)
	if n > 0 {
		// Join did a push/pull with every seed that answered: the table
		// now holds what the cluster knew about us.
		m.mu.Lock()
		m.fresh = false
		m.mu.Unlock()
		m.joined.Store(true)
		m.signal()
	}
	if err != nil {
		return n, fmt.Errorf("membership: join: %w", err)
	}
	return n, nil
}

func (m *Membership) tryJoin() {
	if _, err := m.Join(m.cfg.Seeds); err != nil && !m.joined.Load() {
		m.log.Debug("Joining seeds failed, retrying", "seeds", m.cfg.Seeds, keyErr, err)
	}
}

// SetState changes this node's lifecycle state (forward only: joining ->
// active -> draining -> left) and gossips it. Setting the current state is
// a no-op.
func (m *Membership) SetState(st ring.State) error {
	if err := m.usable(); err != nil {
		return err
	}
	m.mu.Lock()
	cur := m.self
	if st == cur.State {
		m.mu.Unlock()
		return nil
	}
	if !st.Valid() || st < cur.State {
		m.mu.Unlock()
		return fmt.Errorf("%w: %v -> %v", ErrInvalidTransition, cur.State, st)
	}
	m.self = entry{State: st, Seq: cur.Seq + 1}
	m.table[m.cfg.NodeID] = m.self
	m.metas[m.cfg.NodeID] = m.cfg.meta(m.self.State, m.self.Seq)
	m.mu.Unlock()
	m.log.Info("Changing lifecycle state", "from", cur.State.String(), "to", st.String())
	m.signal()
	if err := m.ml.UpdateNode(m.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("membership: announce state %v: %w", st, err)
	}
	return nil
}

// Rejoin moves this node back to joining from draining or left (a drain
// cancelled, or a left node taken back into the roster) and gossips it with
// a higher seq, so it wins over the old entry everywhere.
func (m *Membership) Rejoin() error {
	if err := m.usable(); err != nil {
		return err
	}
	m.mu.Lock()
	cur := m.self
	if cur.State == ring.StateJoining || cur.State == ring.StateActive {
		m.mu.Unlock()
		return nil
	}
	m.self = entry{State: ring.StateJoining, Seq: cur.Seq + 1}
	m.table[m.cfg.NodeID] = m.self
	m.metas[m.cfg.NodeID] = m.cfg.meta(m.self.State, m.self.Seq)
	m.mu.Unlock()
	m.log.Info("Rejoining", "from", cur.State.String())
	m.signal()
	if err := m.ml.UpdateNode(m.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("membership: announce rejoin: %w", err)
	}
	return nil
}

// Remove marks a dead node that will never return as left (the admin
// remove / replace path) and gossips it. It does not check liveness: the
// caller (the admin API) does.
func (m *Membership) Remove(id string) error {
	if err := m.usable(); err != nil {
		return err
	}
	if id == m.cfg.NodeID {
		return ErrRemoveSelf
	}
	m.mu.Lock()
	cur, ok := m.table[id]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	if cur.State == ring.StateLeft {
		m.mu.Unlock()
		return nil
	}
	e := entry{State: ring.StateLeft, Seq: cur.Seq + 1}
	m.table[id] = e
	m.mu.Unlock()
	m.log.Info("Removing node from roster", keyNode, id)
	m.queue.QueueBroadcast(entryBroadcast{id: id, msg: encodeEntryMsg(id, e)})
	m.signal()
	return nil
}

// Leave announces state left, then leaves the gossip cluster gracefully.
// Call Shutdown afterwards.
func (m *Membership) Leave() error {
	if err := m.SetState(ring.StateLeft); err != nil {
		return err
	}
	if err := m.usable(); err != nil {
		return err
	}
	if err := m.ml.Leave(m.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip without announcing anything (other nodes see this
// node die) and waits for the loop and for memberlist's own goroutines (a
// probe in flight ends only at its deadline: linger.go), for at most the
// longer of memberlist's longest probe and its TCP timeout, plus a second.
// It is idempotent.
func (m *Membership) Shutdown() error {
	m.down.Store(true)
	var err error
	if m.ml != nil {
		err = m.ml.Shutdown()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.ml != nil && !m.waitMemberlist(m.linger) {
		m.log.Warn("Gossip goroutines still running after shutdown; going on without them", "waited", m.linger)
	}
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// usable reports ErrNotStarted or ErrShutdown when memberlist cannot be
// used. (Shutdown racing with a state change is the owner's bug: the owner
// stops using Membership before shutting it down.)
func (m *Membership) usable() error {
	switch {
	case m.down.Load():
		return ErrShutdown
	case m.ml == nil:
		return ErrNotStarted
	}
	return nil
}

// signal wakes the loop without blocking.
func (m *Membership) signal() {
	select {
	case m.events <- struct{}{}:
	default:
	}
}

// loop coalesces events into Snapshots and retries joining.
func (m *Membership) loop(ctx context.Context) {
	c := coalescer{
		in:    m.events,
		quiet: m.cfg.QuiescentPeriod,
		max:   m.cfg.MaxCoalescePeriod,
		flush: func() {
			if m.metaDirty.Swap(false) {
				if err := m.ml.UpdateNode(m.cfg.UpdateTimeout); err != nil {
					m.log.Warn("Announcing state failed", keyErr, err)
				}
			}
			m.publish()
			m.reportIdentity()
		},
		tickEvery: m.cfg.RejoinInterval,
		tick: func() {
			if !m.joined.Load() && m.Err() == nil {
				m.tryJoin()
			}
		},
	}
	c.run(ctx)
}

// reportIdentity calls OnIdentity when the cluster id or Clustered changed
// since the last call. Only the loop goroutine calls it.
func (m *Membership) reportIdentity() {
	if m.cfg.OnIdentity == nil {
		return
	}
	clustered := len(m.snap.Load().Members) > 1
	m.mu.Lock()
	id := Identity{ClusterID: m.metas[m.cfg.NodeID].ClusterID, Clustered: clustered || m.reported.Clustered}
	m.mu.Unlock()
	if id == m.reported {
		return
	}
	m.reported = id
	m.cfg.OnIdentity(id)
}

// Pruned reports whether node id has been left (and not live) for at
// least LeftRetention as this node saw it: listings leave it out. The
// roster keeps it as a tombstone (the epoch must never decrease).
func (m *Membership) Pruned(id string) bool {
	m.mu.Lock()
	since := m.leftSince[id]
	m.mu.Unlock()
	return !since.IsZero() && time.Since(since) >= m.cfg.LeftRetention
}

// ClusterID returns the cluster id this node gossips (empty on a new node
// until it has joined).
func (m *Membership) ClusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.metas[m.cfg.NodeID].ClusterID
}

// publish builds a Snapshot from the table and memberlist's live nodes and
// stores it if it differs from the current one.
func (m *Membership) publish() {
	live := map[string]bool{}
	for _, n := range m.ml.Members() {
		live[n.Name] = true
	}
	m.mu.Lock()
	s := newSnapshot(m.cfg.NodeID, m.table, m.metas, live)
	now := time.Now()
	for _, mm := range s.Members {
		switch {
		case mm.State != ring.StateLeft || mm.Live:
			delete(m.leftSince, mm.ID)
		case m.leftSince[mm.ID].IsZero():
			m.leftSince[mm.ID] = now
		}
	}
	m.mu.Unlock()
	old := m.snap.Load()
	if old.equal(s) {
		return
	}
	m.snap.Store(s)
	if old.Epoch != s.Epoch {
		m.log.Info("Roster changed", keyEpoch, s.Epoch, "members", len(s.Members))
	}
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// mergeLocked merges a remote entry for node id into the table and
// reports whether anything changed. For this node's own entry it applies
// the rules of the package doc. m.mu must be held.
func (m *Membership) mergeLocked(id string, e entry) bool {
	cur, ok := m.table[id]
	if ok && !e.newer(cur) {
		return false
	}
	if id != m.cfg.NodeID {
		m.table[id] = e
		return true
	}
	switch {
	case e.State == ring.StateLeft && !m.fresh:
		m.self = e // removed by an admin: accept
	case e.State == m.self.State:
		m.self = e // restarted: adopt the old seq, no epoch change
	default:
		m.self = entry{State: m.self.State, Seq: e.Seq + 1} // re-announce ours
	}
	m.table[id] = m.self
	m.metas[id] = m.cfg.meta(m.self.State, m.self.Seq)
	m.metaDirty.Store(true)
	return true
}
