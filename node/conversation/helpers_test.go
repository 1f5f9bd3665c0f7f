package conversation

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

const testApp = "app1"

// testShards spreads keys over 16 shards.
type testShards struct{ lost *atomic.Bool }

func (testShards) ConvShard(app, cid string) uint16 { return hash16(app, cid) }
func (testShards) ClientShard(app, clientID string) uint16 {
	return hash16(app, "client\x00"+clientID)
}

func (testShards) Count() int { return 16 }

// Coordinates is true unless lost is set and true (a node whose lease ran
// out).
func (s testShards) Coordinates(uint16) bool { return s.lost == nil || !s.lost.Load() }

func (testShards) Coordinated() []uint16 {
	out := make([]uint16, 16)
	for i := range out {
		out[i] = uint16(i)
	}
	return out
}

func hash16(a, b string) uint16 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(a + "\x00" + b))
	return uint16(h.Sum32() % 16)
}

// delivered is one push as one session received it.
type delivered struct {
	client  string
	session SessionID
	cmd     *pb.GenericCommand
}

// testDeliverer is an in-memory gateway: clients with sessions, recording
// every push per session.
type testDeliverer struct {
	mu       sync.Mutex
	sessions map[string][]SessionID // clientID -> sessions
	got      []delivered
}

func newTestDeliverer() *testDeliverer { return &testDeliverer{sessions: map[string][]SessionID{}} }

func (d *testDeliverer) Deliver(app string, clientIDs []string, except SessionID, cmd *pb.GenericCommand) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range clientIDs {
		for _, s := range d.sessions[id] {
			if s == except {
				continue
			}
			c := proto.Clone(cmd).(*pb.GenericCommand)
			c.PeerId = proto.String(id)
			d.got = append(d.got, delivered{client: id, session: s, cmd: c})
		}
	}
}

func (d *testDeliverer) Online(app string, clientIDs []string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range clientIDs {
		if len(d.sessions[id]) > 0 {
			out = append(out, id)
		}
	}
	return out
}

func (d *testDeliverer) connect(client string, s SessionID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sessions[client] = append(d.sessions[client], s)
}

func (d *testDeliverer) disconnect(client string, s SessionID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sessions[client] = slices.DeleteFunc(d.sessions[client], func(x SessionID) bool { return x == s })
}

// take returns and forgets everything delivered so far.
func (d *testDeliverer) take() []delivered {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.got
	d.got = nil
	return out
}

// pushKey summarizes a push as "client/session:cmd/op".
func pushKey(p delivered) string {
	s := p.client + "/" + string(rune('0'+p.session%10)) + ":" + p.cmd.GetCmd().String()
	if p.cmd.Op != nil {
		s += "/" + p.cmd.GetOp().String()
	}
	return s
}

func pushKeys(ps []delivered) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, pushKey(p))
	}
	slices.Sort(out)
	return out
}

// testClock is a manual clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	t     testing.TB
	e     *Engine
	d     *testDeliverer
	clock *testClock
	st    *store.Store
	dir   string
	fs    vfs.FS
	// lostLease makes the engine's node stop coordinating every shard.
	lostLease atomic.Bool
	// kv is the engine's store.KV.
	kv *lockCheckKV
}

// lockCheckKV is the engine's store.KV in tests: the node's Store, failing
// the test when a batch written while the stripe lock of a conversation it
// writes is held touches more than one shard (node/LOCKING.md: under a
// stripe lock the engine writes its own shard only; the rest goes through
// the outbox). fail, if set, fails chosen commits (a down target shard).
type lockCheckKV struct {
	*store.Store
	t    testing.TB
	e    *Engine
	fail atomic.Pointer[func(b *store.Batch) error]
	// scan, if set, runs before every Scan with its lower bound.
	scan atomic.Pointer[func(lower []byte)]
}

func (k *lockCheckKV) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if f := k.scan.Load(); f != nil {
		(*f)(lower)
	}
	return k.Store.Scan(lower, upper, reverse, fn)
}

func (k *lockCheckKV) Commit(b *store.Batch) error {
	shards := map[uint16]bool{}
	for _, op := range b.Ops() {
		s, err := store.ShardOf(op.Key)
		if err != nil {
			k.t.Errorf("commit of a key without a shard: %x", op.Key)
			continue
		}
		shards[s] = true
	}
	if len(shards) > 1 && k.e != nil {
		for _, op := range b.Ops() {
			if app, id, ok := stripeOf(op.Key); ok {
				st := k.e.convStripe(app, id)
				if !st.mu.TryLock() {
					k.t.Errorf("a batch written under the stripe lock of %q touches %d shards", id, len(shards))
					break
				}
				st.mu.Unlock()
			}
		}
	}
	if f := k.fail.Load(); f != nil {
		if err := (*f)(b); err != nil {
			return err
		}
	}
	return k.Store.Commit(b)
}

// stripeOf returns the app and stripe id of a conversation key (its cid,
// or "unique:" and the unique key), false for other keys.
func stripeOf(key []byte) (app, id string, ok bool) {
	r, _, app, fam := store.ReadKey(key)
	id = r.Str()
	if r.Err() != nil {
		return "", "", false
	}
	switch fam {
	case store.FamConv, store.FamMsg, store.FamMsgID, store.FamPatch, store.FamDedup, store.FamRoom, store.FamSub, store.FamPush:
		return app, id, true
	case store.FamUnique:
		return app, "unique:" + id, true
	default:
		return "", "", false
	}
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return openHarness(t, vfs.NewMem(), "db", newTestDeliverer(), &testClock{now: time.UnixMilli(1_700_000_000_000)})
}

func openHarness(t testing.TB, fs vfs.FS, dir string, d *testDeliverer, clock *testClock) *harness {
	t.Helper()
	return openHarnessStore(t, store.Config{Dir: dir, FS: fs, CacheSize: 1 << 20}, d, clock)
}

// openHarnessStore is openHarness on a store opened with cfg (its Logger
// set here).
func openHarnessStore(t testing.TB, cfg store.Config, d *testDeliverer, clock *testClock) *harness {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Logger = logger
	fs, dir := cfg.FS, cfg.Dir
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, d: d, clock: clock, st: st, dir: dir, fs: fs}
	kv := &lockCheckKV{Store: st, t: t}
	h.kv = kv
	e, err := New(Config{Store: kv, Shards: testShards{lost: &h.lostLease}, Deliverer: d, Clock: clock.Now, Logger: logger,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	kv.e = e
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.st != nil {
		h.e.Stop()
		_ = h.st.Close()
		h.st = nil
	}
}

// reopen closes and reopens the engine on the same store files.
func (h *harness) reopen() *harness {
	h.close()
	return openHarness(h.t, h.fs, h.dir, h.d, h.clock)
}

// caller returns a Caller for client with session s, registering it online.
func (h *harness) caller(client string, s SessionID) Caller {
	h.d.connect(client, s)
	return Caller{App: testApp, ClientID: client, Session: s, ConfigBitmap: 187}
}

// do runs a command and fails the test on any error.
func (h *harness) do(c Caller, req *pb.GenericCommand) *pb.GenericCommand {
	h.t.Helper()
	resp, err := h.e.Handle(context.Background(), c, req)
	if err != nil {
		h.t.Fatalf("%s: %v", commandName(req), err)
	}
	return resp
}

// fail runs a command that must fail with the protocol error want.
func (h *harness) fail(c Caller, req *pb.GenericCommand, want *protocol.Error) {
	h.t.Helper()
	_, err := h.e.Handle(context.Background(), c, req)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != want.Code || pe.Reason != want.Reason {
		h.t.Fatalf("%s: got %v, want %d %s", commandName(req), err, want.Code, want.Reason)
	}
}

func convReq(op pb.OpType, cm *pb.ConvCommand) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: op.Enum(), I: proto.Int32(1), ConvMessage: cm}
}

func (h *harness) start(c Caller, members ...string) string {
	h.t.Helper()
	resp := h.do(c, convReq(pb.OpType_start, &pb.ConvCommand{M: members, Attr: protocol.JSON(`{"name":"n"}`)}))
	return resp.GetConvMessage().GetCid()
}

func directReq(cid, msg string) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(2),
		DirectMessage: &pb.DirectCommand{Cid: proto.String(cid), Msg: proto.String(msg), MentionAll: proto.Bool(false)}}
}

func (h *harness) send(c Caller, cid, msg string) (string, int64) {
	h.t.Helper()
	a := h.do(c, directReq(cid, msg)).GetAckMessage()
	return a.GetUid(), a.GetT()
}

func logsReq(lm *pb.LogsCommand) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: pb.CommandType_logs.Enum(), I: proto.Int32(3), LogsMessage: lm}
}
