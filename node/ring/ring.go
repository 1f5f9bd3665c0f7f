package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Limits and defaults of a placement. They are part of the cluster's
// configuration, fixed at creation (docs/architecture.md).
const (
	// DefaultShards is the default shard count S: enough that one shard is a
	// small unit of rebalancing (about 0.4% of the data) and that balance
	// within a few percent is reachable for up to a few dozen nodes, and small
	// enough that per-shard state (digests, catch-up cursors) stays cheap.
	DefaultShards = 256
	// MaxShards bounds S so that shard ids fit the uint32 of the score
	// encoding and per-shard tables stay small.
	MaxShards = 1 << 16
	// DefaultReplicationFactor is R: three copies survive one lost node with
	// write quorum two.
	DefaultReplicationFactor = 3
	// MaxReplicationFactor bounds R; more copies than this is a configuration
	// mistake, not a durability plan.
	MaxReplicationFactor = 7
	// MaxNodes bounds the placed nodes so a node index fits the int16 of the
	// placement tables; real clusters are far smaller.
	MaxNodes = 1 << 14
)

// Errors returned by New and Config.Validate.
var (
	ErrInvalidConfig = errors.New("ring: invalid config")
	ErrInvalidRoster = errors.New("ring: invalid roster")
)

// State is a node's lifecycle state. The numeric values are gossiped and are
// a contract: never renumber them.
type State uint8

// Lifecycle states, in the only order a node moves through them.
const (
	// StateUnknown is the zero value; it never appears in a valid roster.
	StateUnknown State = 0
	// StateJoining: the node was added, receives writes and streams in its
	// shards; it is placed but should not coordinate until caught up.
	StateJoining State = 1
	// StateActive: a full member.
	StateActive State = 2
	// StateDraining: the node is handing its shards off; it owns its old
	// copies but is not in the placement target.
	StateDraining State = 3
	// StateLeft: the node left or was removed; it owns nothing.
	StateLeft State = 4
)

// String returns the lowercase name used in logs, the admin API and flags.
func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateActive:
		return "active"
	case StateDraining:
		return "draining"
	case StateLeft:
		return "left"
	default:
		return fmt.Sprintf("unknown(%d)", uint8(s))
	}
}

// ParseState is the inverse of State.String for the four valid states.
func ParseState(s string) (State, error) {
	for st := StateJoining; st <= StateLeft; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return StateUnknown, fmt.Errorf("ring: unknown state %q", s)
}

// Valid reports whether s is one of the four lifecycle states.
func (s State) Valid() bool { return s >= StateJoining && s <= StateLeft }

// Owns reports whether a node in state s owns data (is in the roster).
func (s State) Owns() bool { return s >= StateJoining && s <= StateDraining }

// Placed reports whether a node in state s is in the placement target.
func (s State) Placed() bool { return s == StateJoining || s == StateActive }

// Member is one node of the roster as the ring sees it.
type Member struct {
	// ID is the stable node id (the StatefulSet pod name in Kubernetes).
	ID string
	// State is the node's lifecycle state.
	State State
}

// Config is the fixed shape of a placement.
type Config struct {
	// Shards is S, the number of shards. Zero value means DefaultShards.
	Shards int
	// ReplicationFactor is R, the replicas per shard. Zero value means
	// DefaultReplicationFactor. With fewer than R placed nodes every shard
	// is on every placed node.
	ReplicationFactor int
}

// DefaultConfig returns the production placement shape: 256 shards, R=3.
func DefaultConfig() Config {
	return Config{Shards: DefaultShards, ReplicationFactor: DefaultReplicationFactor}
}

// DefaultLocalConfig returns a small shape for tests: 16 shards, R=3.
func DefaultLocalConfig() Config {
	return Config{Shards: 16, ReplicationFactor: DefaultReplicationFactor}
}

func (c Config) withDefaults() Config {
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	return c
}

// Validate checks the config after zero values take their defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Shards < 1 || c.Shards > MaxShards {
		return fmt.Errorf("%w: shards %d not in [1, %d]", ErrInvalidConfig, c.Shards, MaxShards)
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > MaxReplicationFactor {
		return fmt.Errorf("%w: replication factor %d not in [1, %d]",
			ErrInvalidConfig, c.ReplicationFactor, MaxReplicationFactor)
	}
	return nil
}

// Ring is an immutable placement. All methods are safe for concurrent use;
// slices it returns are shared and must not be modified.
type Ring struct {
	epoch  uint64
	shards int
	r      int // effective replicas per shard: min(R, placed nodes)
	cfgR   int
	sig    uint64
	// members is the roster (states joining, active, draining) plus left
	// nodes, sorted by id.
	members []Member
	// placed are the ids of the nodes in the placement target, sorted.
	placed []string
	// replicas holds r node ids per shard, shard s at [s*r, (s+1)*r), in
	// coordinator order.
	replicas []string
}

// New computes the placement for members at the given roster epoch. The
// order of members does not matter; ids must be unique and non-empty and
// every state valid. Members in StateLeft are kept for Members but own
// nothing.
func New(cfg Config, epoch uint64, members []Member) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for i, m := range ms {
		if m.ID == "" {
			return nil, fmt.Errorf("%w: empty node id", ErrInvalidRoster)
		}
		if !m.State.Valid() {
			return nil, fmt.Errorf("%w: node %q has state %v", ErrInvalidRoster, m.ID, m.State)
		}
		if i > 0 && ms[i-1].ID == m.ID {
			return nil, fmt.Errorf("%w: duplicate node id %q", ErrInvalidRoster, m.ID)
		}
	}
	rg := &Ring{epoch: epoch, shards: cfg.Shards, cfgR: cfg.ReplicationFactor, members: ms}
	for _, m := range ms {
		if m.State.Placed() {
			rg.placed = append(rg.placed, m.ID)
		}
	}
	if len(rg.placed) > MaxNodes {
		return nil, fmt.Errorf("%w: %d placed nodes, at most %d", ErrInvalidRoster, len(rg.placed), MaxNodes)
	}
	rg.r = min(cfg.ReplicationFactor, len(rg.placed))
	rg.replicas = place(rg.placed, cfg.Shards, rg.r)
	rg.sig = signature(cfg, ms)
	return rg, nil
}

// Epoch returns the roster epoch the ring was built for.
func (rg *Ring) Epoch() uint64 { return rg.epoch }

// Signature returns a hash of everything placement depends on (S, R and the
// members with their states), independent of the epoch: two nodes with equal
// signatures compute identical placements.
func (rg *Ring) Signature() uint64 { return rg.sig }

// Shards returns S.
func (rg *Ring) Shards() int { return rg.shards }

// ReplicationFactor returns the configured R (replica lists are shorter when
// fewer nodes are placed).
func (rg *Ring) ReplicationFactor() int { return rg.cfgR }

// Members returns every member the ring was built from, sorted by id. The
// slice is shared: do not modify it.
func (rg *Ring) Members() []Member { return slices.Clip(rg.members) }

// Placed returns the ids of the nodes in the placement target (joining and
// active), sorted. The slice is shared: do not modify it.
func (rg *Ring) Placed() []string { return slices.Clip(rg.placed) }

// State returns the state of node id, or StateUnknown if it is not a member.
func (rg *Ring) State(id string) State {
	i, ok := slices.BinarySearchFunc(rg.members, id, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	if !ok {
		return StateUnknown
	}
	return rg.members[i].State
}

// Replicas returns the replica list of shard, coordinator-preference first.
// It is empty when no node is placed. The slice is shared: do not modify it.
// Replicas panics if shard is out of range (a caller bug).
func (rg *Ring) Replicas(shard int) []string {
	if shard < 0 || shard >= rg.shards {
		panic(fmt.Sprintf("ring: shard %d out of range [0, %d)", shard, rg.shards))
	}
	lo, hi := shard*rg.r, (shard+1)*rg.r
	return rg.replicas[lo:hi:hi]
}

// IsReplica reports whether node id is in shard's replica list.
func (rg *Ring) IsReplica(shard int, id string) bool {
	return slices.Contains(rg.Replicas(shard), id)
}

// Coordinator returns the first replica of shard for which live returns
// true, and false if none is live. live must be safe to call from the
// calling goroutine; a nil live treats every node as live. Besides gossip
// liveness, live may exclude replicas that are still catching up (a joining
// or restarted node must not coordinate before it has the shard).
func (rg *Ring) Coordinator(shard int, live func(id string) bool) (string, bool) {
	for _, id := range rg.Replicas(shard) {
		if live == nil || live(id) {
			return id, true
		}
	}
	return "", false
}

// ShardsOf returns the shards node id replicates, ascending. The slice is
// newly allocated and owned by the caller.
func (rg *Ring) ShardsOf(id string) []int {
	var out []int
	for s := range rg.shards {
		if rg.IsReplica(s, id) {
			out = append(out, s)
		}
	}
	return out
}

// ConversationShard returns the shard of conversation id of app.
func (rg *Ring) ConversationShard(app, id string) int { return ConversationShard(rg.shards, app, id) }

// ClientShard returns the shard of client id of app.
func (rg *Ring) ClientShard(app, id string) int { return ClientShard(rg.shards, app, id) }

// ConversationShard returns xxhash64(enc(app, id)) mod shards (see the
// package doc; this is a disk contract). shards must be positive.
func ConversationShard(shards int, app, id string) int {
	return shardOf(shards, app, id)
}

// ClientShard returns xxhash64(enc(app, "client", id)) mod shards (see the
// package doc; this is a disk contract). shards must be positive.
func ClientShard(shards int, app, id string) int {
	return shardOf(shards, app, "client", id)
}

func shardOf(shards int, parts ...string) int {
	var stack [128]byte
	b := appendEnc(stack[:0], parts...)
	return int(xxhash.Sum64(b) % uint64(shards))
}

// appendEnc appends the length-prefixed encoding of parts to b.
func appendEnc(b []byte, parts ...string) []byte {
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func signature(cfg Config, ms []Member) uint64 {
	d := xxhash.New()
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(cfg.Shards))
	b = binary.BigEndian.AppendUint32(b, uint32(cfg.ReplicationFactor))
	for _, m := range ms {
		b = appendEnc(b, m.ID)
		b = append(b, byte(m.State))
	}
	_, _ = d.Write(b)
	return d.Sum64()
}
