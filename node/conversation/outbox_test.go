package conversation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/replica"
	"github.com/imcluster/imcluster/node/ring"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/transport"
)

var errShardDown = errors.New("test: the shard's coordinator is down")

// TestOutboxMergeOpRoundTrip keeps mergeOpFields in step with the form
// store.Batch.MergeFields records.
func TestOutboxMergeOpRoundTrip(t *testing.T) {
	var b store.Batch
	b.MergeFields([]byte("k"), []store.Field{{Name: "rt", Value: []byte("12")}, {Name: "at", Deleted: true},
		{Name: "ch", Value: []byte{}}, {Name: "x", Value: bytes.Repeat([]byte("v"), 300)}})
	op := b.Ops()[0]
	fields, err := mergeOpFields(op.Value)
	if err != nil {
		t.Fatal(err)
	}
	var again store.Batch
	again.MergeFields(op.Key, fields)
	if got := again.Ops()[0]; !bytes.Equal(got.Value, op.Value) || got.Kind != store.OpMergeFields {
		t.Fatalf("round trip changed the op: %x, want %x", got.Value, op.Value)
	}
	ops, err := decodeOutboxOps(encodeOutboxOps(b.Ops()))
	if err != nil || len(ops) != 1 || !bytes.Equal(ops[0].Value, op.Value) || !bytes.Equal(ops[0].Key, op.Key) {
		t.Fatalf("entry round trip: %v %v", ops, err)
	}
	for _, bad := range [][]byte{nil, {2}, {outboxFormat, byte(store.OpSet), 5, 'a'}, {outboxFormat, 99, 0, 0}} {
		if _, err := decodeOutboxOps(bad); !errors.Is(err, errCorruptOutbox) {
			t.Fatalf("decode %x: %v", bad, err)
		}
	}
}

// outboxScene is Tom's conversation and a client outside its shard, in an
// engine whose drainer runs every 10 ms once started.
func outboxScene(t *testing.T) (h *harness, tom Caller, cid, member string) {
	t.Helper()
	h = newHarness(t)
	h.e.cfg.OutboxInterval = 10 * time.Millisecond
	tom = h.caller("Tom", 1)
	cid = h.start(tom)
	return h, tom, cid, outsider(t, h, h.e.shards.ConvShard(testApp, cid))
}

// restart stops the engine and starts another over the same store, its
// drainer running every 10 ms.
func (h *harness) restart() *harness {
	h = h.reopen()
	h.e.cfg.OutboxInterval = 10 * time.Millisecond
	h.e.Start(h.t.Context())
	return h
}

// outsider returns a client id whose client shard is not shard.
func outsider(t *testing.T, h *harness, shard uint16) string {
	t.Helper()
	for _, id := range []string{"Jerry", "Mary", "William", "Spike", "Tyke", "Butch", "Nibbles", "Toodles"} {
		if h.e.shards.ClientShard(testApp, id) != shard {
			return id
		}
	}
	t.Fatal("no client outside the shard")
	return ""
}

// downShard makes every commit touching shard fail (its coordinator is
// down) until the returned function is called.
func downShard(h *harness, shard uint16) (up func()) {
	f := func(b *store.Batch) error {
		for _, op := range b.Ops() {
			if s, _ := store.ShardOf(op.Key); s == shard {
				return errShardDown
			}
		}
		return nil
	}
	h.kv.fail.Store(&f)
	return func() { h.kv.fail.Store(nil) }
}

func (h *harness) indexed(client, cid string) bool {
	h.t.Helper()
	cids, err := h.e.clientConvs(testApp, client)
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.Contains(cids, cid)
}

func (h *harness) outboxLen(cid string) int {
	h.t.Helper()
	n := 0
	err := h.st.ScanPrefix(store.OutboxKey(h.e.shards.ConvShard(testApp, cid), testApp, cid).Bytes(), false, func(_, _ []byte) (bool, error) {
		n++
		return true, nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) notifications(client string) int {
	h.t.Helper()
	ns, _, err := h.e.Notifications(h.t.Context(), testApp, client, 0, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(ns)
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutboxTargetDown: conv/add of a member whose shard is down answers
// (the conversation's own shard committed), the conversation stays usable
// and the member's index and notifications arrive once the shard is back,
// applied by the drainer.
func TestOutboxTargetDown(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	h.e.cfg.OutboxWait = 20 * time.Millisecond
	h.caller(member, 2)
	up := downShard(h, h.e.shards.ClientShard(testApp, member))
	defer up()
	h.e.Start(t.Context())

	resp := h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if !slices.Equal(resp.GetConvMessage().GetAllowedPids(), []string{member}) {
		t.Fatalf("add answered %v", resp)
	}
	h.send(tom, cid, "while the member's shard is down")
	if h.indexed(member, cid) || h.outboxLen(cid) == 0 {
		t.Fatalf("the effects reached a down shard (indexed %v, outbox %d)", h.indexed(member, cid), h.outboxLen(cid))
	}
	up()
	eventually(t, "index after the shard is back", func() bool { return h.indexed(member, cid) && h.outboxLen(cid) == 0 })
	if n := h.notifications(member); n != 2 { // joined, members_joined
		t.Fatalf("member has %d notifications, want 2", n)
	}
}

// TestOutboxOrderPerMember: a member added and removed while its shard is
// down ends up not indexed: the effects apply in the order written.
func TestOutboxOrderPerMember(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	up := downShard(h, h.e.shards.ClientShard(testApp, member))
	for _, op := range []pb.OpType{pb.OpType_add, pb.OpType_remove, pb.OpType_add, pb.OpType_remove} {
		h.do(tom, convReq(op, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	}
	if n := h.outboxLen(cid); n < 4 {
		t.Fatalf("outbox holds %d entries, want one per command at least", n)
	}
	up()
	h.e.flushOutbox([]convRef{{testApp, cid}})
	if h.indexed(member, cid) {
		t.Fatal("after add, remove, add, remove: the member is indexed")
	}
	h.e.Start(t.Context())
	eventually(t, "the drainer deletes the applied entries", func() bool { return h.outboxLen(cid) == 0 })
	if n := h.notifications(member); n != 8 {
		t.Fatalf("member has %d notifications, want 8", n)
	}
}

// TestOutboxCrashBeforeApply: the node stops after a command committed its
// own shard and before its effects reached the member's shard; the engine
// started again over the same store applies them, once.
func TestOutboxCrashBeforeApply(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	downShard(h, h.e.shards.ClientShard(testApp, member))
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if h.indexed(member, cid) || h.notifications(member) != 0 {
		t.Fatal("the effects reached a down shard")
	}

	h = h.restart()
	eventually(t, "effects after the restart", func() bool { return h.indexed(member, cid) && h.outboxLen(cid) == 0 })
	if n := h.notifications(member); n != 2 {
		t.Fatalf("member has %d notifications, want 2", n)
	}
}

// TestOutboxCrashBeforeDelete: the effects were applied but the entries not
// deleted when the node stopped, and the member read the conversation
// meanwhile; applying the entries again after the restart leaves the
// member's state as it was (its index, its notifications once, its read
// pointer where the read put it).
func TestOutboxCrashBeforeDelete(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	// Applied; the entries are deleted with the conversation's next
	// commit, or when the engine stops, which fails here.
	failOutboxDeletes(h, cid, false)
	if !h.indexed(member, cid) || h.outboxLen(cid) == 0 || h.notifications(member) != 2 {
		t.Fatalf("want the effects applied and the entries kept: indexed %v, outbox %d", h.indexed(member, cid), h.outboxLen(cid))
	}
	h.clock.Advance(time.Second)
	_, ts := h.send(tom, cid, "after the join")
	h.do(h.caller(member, 2), readReq(cid, ts, ""))
	before, err := h.e.loadClientState(testApp, member, cid)
	if err != nil || before.ReadTs != ts {
		t.Fatalf("read pointer %d after the read (%v), want %d", before.ReadTs, err, ts)
	}

	h = h.restart()
	eventually(t, "outbox drained after the restart", func() bool { return h.outboxLen(cid) == 0 })
	after, err := h.e.loadClientState(testApp, member, cid)
	if err != nil {
		t.Fatal(err)
	}
	if !h.indexed(member, cid) || h.notifications(member) != 2 || after.ReadTs != before.ReadTs || after.Changed != before.Changed {
		t.Fatalf("replay changed the member's state: indexed %v, %d notifications, state %+v, was %+v",
			h.indexed(member, cid), h.notifications(member), after, before)
	}
}

// TestRouteCreatesAtTheNewShard: every creation runs at the coordinator of
// the new conversation's shard, so its own records are local there: the
// router chooses the id of a conversation without a unique key (and of a
// system conversation), and a unique conversation gets an id in its unique
// key's shard.
func TestRouteCreatesAtTheNewShard(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("Tom", 1)
	for _, c := range []Caller{tom, SystemCaller(testApp, "")} {
		req := convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Jerry"}, Unique: proto.Bool(false)})
		parts := h.e.Route(c, req)
		if len(parts) != 1 || parts[0].Anywhere || req.GetConvMessage().GetCid() != "" {
			t.Fatalf("%+v: start routed to %+v", c, parts)
		}
		cid := parts[0].Req.GetConvMessage().GetCid()
		if parts[0].Shard != h.e.shards.ConvShard(testApp, cid) {
			t.Fatalf("start of %s routed to shard %d, its shard is %d", cid, parts[0].Shard, h.e.shards.ConvShard(testApp, cid))
		}
		if got := h.do(c, parts[0].Req).GetConvMessage().GetCid(); got != cid {
			t.Fatalf("created %s, routed as %s", got, cid)
		}
		// The same id again (a client naming an existing conversation)
		// is refused and changes nothing.
		h.fail(c, parts[0].Req, protocol.ErrInvalidMessagingTarget)
	}
	req := convReq(pb.OpType_start, &pb.ConvCommand{M: []string{"Mary"}})
	parts := h.e.Route(tom, req)
	cid := h.do(tom, parts[0].Req).GetConvMessage().GetCid()
	if len(parts) != 1 || h.e.shards.ConvShard(testApp, cid) != parts[0].Shard {
		t.Fatalf("unique conversation %s in shard %d, routed to %+v", cid, h.e.shards.ConvShard(testApp, cid), parts)
	}
}

// TestOutboxEntriesDeletedWithTheNextCommit: applied entries cost no commit
// of their own: the conversation's next commit deletes them in its batch,
// and an engine that stops deletes those left.
func TestOutboxEntriesDeletedWithTheNextCommit(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if !h.indexed(member, cid) || h.outboxLen(cid) == 0 {
		t.Fatalf("after the add: indexed %v, outbox %d", h.indexed(member, cid), h.outboxLen(cid))
	}
	h.do(tom, convReq(pb.OpType_mute, &pb.ConvCommand{Cid: proto.String(cid)})) // no effect elsewhere
	if n := h.outboxLen(cid); n != 0 {
		t.Fatalf("%d entries left after the next commit", n)
	}
	h.do(tom, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if h.indexed(member, cid) || h.outboxLen(cid) == 0 {
		t.Fatalf("after the remove: indexed %v, outbox %d", h.indexed(member, cid), h.outboxLen(cid))
	}
	h = h.reopen()
	if n := h.outboxLen(cid); n != 0 {
		t.Fatalf("%d entries left after the engine stopped", n)
	}
}

// failOutboxDeletes makes the deletions of applied outbox entries of cid's
// shard fail, as if the node stopped before them: the entries stay and are
// applied again by the next engine. With alone, only batches of nothing
// but such deletions fail (the runner's and the stopping engine's), not the
// conversation's next commit that carries them.
func failOutboxDeletes(h *harness, cid string, alone bool) {
	outbox := store.OutboxPrefix(h.e.shards.ConvShard(testApp, cid)).Bytes()
	f := func(b *store.Batch) error {
		deletes := 0
		for _, op := range b.Ops() {
			if op.Kind == store.OpDelete && bytes.HasPrefix(op.Key, outbox) {
				deletes++
			}
		}
		if deletes > 0 && (!alone || deletes == len(b.Ops())) {
			return errShardDown
		}
		return nil
	}
	h.kv.fail.Store(&f)
}

// TestOutboxReplayKeepsLaterReads: an import sets a member's unread count
// (SetUnread moves the read pointer back), the member then reads, and the
// entries are applied again after a restart (applied, not deleted): the
// replayed SetUnread must not move the read pointer back over the read.
func TestOutboxReplayKeepsLaterReads(t *testing.T) {
	h := newHarness(t)
	h.e.cfg.OutboxInterval = 10 * time.Millisecond
	ctx := t.Context()
	const cid = "imported-unread"
	member := outsider(t, h, h.e.shards.ConvShard(testApp, cid))
	if _, err := h.e.ImportConversation(ctx, testApp, ImportedConversation{ID: cid, Creator: "Tom", Members: []string{"Tom", member}, Created: 1, Updated: 2}); err != nil {
		t.Fatal(err)
	}
	msgs := make([]ImportedMessage, 10)
	for i := range msgs {
		msgs[i] = ImportedMessage{ID: fmt.Sprintf("m%02d", i), From: "Tom", Ts: int64(1000 + i), Data: "x"}
	}
	if _, err := h.e.ImportMessages(ctx, testApp, cid, msgs); err != nil {
		t.Fatal(err)
	}
	failOutboxDeletes(h, cid, true)
	if err := h.e.SetUnread(ctx, testApp, cid, map[string]int{member: 5}); err != nil {
		t.Fatal(err)
	}
	if u, err := h.e.UnreadCount(ctx, testApp, member, cid); err != nil || u != 5 || h.outboxLen(cid) == 0 {
		t.Fatalf("after SetUnread: unread %d (%v), outbox %d; want 5 and the entries kept", u, err, h.outboxLen(cid))
	}
	h.clock.Advance(time.Second)
	h.do(h.caller(member, 2), readReq(cid, 1009, ""))
	before, err := h.e.loadClientState(testApp, member, cid)
	if err != nil || before.ReadTs != 1009 {
		t.Fatalf("read pointer %d after the read (%v), want 1009", before.ReadTs, err)
	}

	h = h.restart()
	eventually(t, "outbox drained after the restart", func() bool { return h.outboxLen(cid) == 0 })
	after, err := h.e.loadClientState(testApp, member, cid)
	if err != nil {
		t.Fatal(err)
	}
	if after.ReadTs != before.ReadTs || after.Changed != before.Changed {
		t.Fatalf("the replayed SetUnread moved the read pointer back: state %+v, was %+v", after, before)
	}
	if u, err := h.e.UnreadCount(ctx, testApp, member, cid); err != nil || u != 0 {
		t.Fatalf("unread after the replay %d (%v), want 0", u, err)
	}
}

// TestOutboxDeletedUniqueRecreated: an imported unique conversation whose
// unique key lives in another shard is deleted, and the same member set
// starts a conversation again before the deletion's effects reached the
// key's shard: the new conversation keeps the key, and starting it once
// more finds it (the late effects of the deletion must not remove the new
// mapping).
func TestOutboxDeletedUniqueRecreated(t *testing.T) {
	h := newHarness(t)
	h.e.cfg.OutboxInterval = 10 * time.Millisecond
	h.e.cfg.OutboxWait = 20 * time.Millisecond
	ctx := t.Context()
	tom := h.caller("Tom", 1)
	key := uniqueKey([]string{"Jerry", "Tom"})
	idx := h.e.uniqueIndexKey(testApp, key)
	cid := newConvID(1)
	for h.e.shards.ConvShard(testApp, cid) == h.e.shards.ConvShard(testApp, key) {
		cid = newConvID(1)
	}
	if _, err := h.e.ImportConversation(ctx, testApp, ImportedConversation{ID: cid, Creator: "Tom", Members: []string{"Tom", "Jerry"},
		Unique: true, Created: 1, Updated: 2}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.e.uniqueConv(testApp, key); err != nil || r == nil || r.ID != cid {
		t.Fatalf("unique key after the import: %+v %v, want %s", r, err, cid)
	}
	// The deletion's effects on the key's shard wait (its coordinator is
	// slow, say) while the member set starts a conversation again.
	held := func(b *store.Batch) error {
		for _, op := range b.Ops() {
			if op.Kind == store.OpDelete && bytes.Equal(op.Key, idx) {
				return errShardDown
			}
		}
		return nil
	}
	h.kv.fail.Store(&held)
	if err := h.e.DeleteConversation(ctx, testApp, cid); err != nil {
		t.Fatal(err)
	}
	again := h.start(tom, "Jerry")
	if again == cid || again == "" {
		t.Fatalf("started %q after deleting %s", again, cid)
	}
	h.kv.fail.Store(nil)
	h.e.Start(ctx)
	eventually(t, "the deletion's effects applied", func() bool { return h.outboxLen(cid) == 0 })
	if r, err := h.e.uniqueConv(testApp, key); err != nil || r == nil || r.ID != again {
		t.Fatalf("unique key maps to %+v (%v), want the new conversation %s", r, err, again)
	}
	if got := h.start(tom, "Jerry"); got != again {
		t.Fatalf("starting the member set again gave %s, want the existing %s", got, again)
	}
}

// TestOutboxStopsWithTheLease: a node whose lease on the conversation's
// shard ran out applies none of the conversation's remaining effects (the
// new coordinator's drainer does, in order with its own later ones); once
// it coordinates again, it applies them.
func TestOutboxStopsWithTheLease(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	h.e.cfg.OutboxWait = 20 * time.Millisecond
	up := downShard(h, h.e.shards.ClientShard(testApp, member))
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if h.indexed(member, cid) || h.outboxLen(cid) == 0 {
		t.Fatal("the effects reached a down shard")
	}
	h.lostLease.Store(true)
	up()
	h.e.flushOutbox([]convRef{{testApp, cid}})
	if h.indexed(member, cid) {
		t.Fatal("a node that no longer coordinates the conversation applied its effects")
	}
	h.lostLease.Store(false)
	h.e.flushOutbox([]convRef{{testApp, cid}})
	if !h.indexed(member, cid) {
		t.Fatal("the coordinator did not apply the effects")
	}
}

// soloPeers is the roster of a one-node cluster: the node alone holds every
// shard, and no peer is ever called.
type soloPeers struct{ rg *ring.Ring }

func (p soloPeers) Ring() *ring.Ring               { return p.rg }
func (p soloPeers) Live(string) bool               { return true }
func (p soloPeers) MemberActive(string) bool       { return true }
func (p soloPeers) Coordinators(s uint16) []string { return p.rg.Replicas(int(s)) }
func (p soloPeers) Suspected(string) bool          { return false }
func (p soloPeers) Reachable(string) bool          { return true }
func (p soloPeers) NoteCall(string, error)         {}
func (p soloPeers) Draining() bool                 { return false }
func (p soloPeers) CaughtUp() error                { return nil }
func (p soloPeers) Call(context.Context, string, uint16, []byte) ([]byte, error) {
	return nil, transport.ErrUnavailable
}
func (p soloPeers) Send(string, uint16, []byte) error { return transport.ErrUnavailable }
func (p soloPeers) CallFunc(_ string, _ uint16, _ []byte, _ time.Duration, done func([]byte, error)) {
	done(nil, transport.ErrUnavailable)
}

// clusterHarness is a harness whose engine writes through the cluster KV
// of a real one-node replica.Set (versioned records, last-writer-wins)
// over a Pebble store, not the plain Store.
func clusterHarness(t *testing.T) (*harness, store.KV) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := store.Open(store.Config{Dir: "db", FS: vfs.NewMem(), CacheSize: 1 << 20, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	shards := testShards{}
	rg, err := ring.New(ring.Config{Shards: shards.Count(), ReplicationFactor: 1}, 1, []ring.Member{{ID: "a", State: ring.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := replica.DefaultLocalConfig()
	cfg.NodeID, cfg.Store, cfg.Shards, cfg.WriteQuorum, cfg.Logger = "a", st, shards.Count(), 1, logger
	rs, err := replica.New(cfg, soloPeers{rg: rg})
	if err != nil {
		t.Fatal(err)
	}
	rs.OnRing(nil, rg)
	rs.CatchUpAlone()
	rs.Start()
	t.Cleanup(rs.Shutdown)
	kv := rs.KV()
	h := &harness{t: t, d: newTestDeliverer(), clock: &testClock{now: time.UnixMilli(1_700_000_000_000)}}
	h.e, err = New(Config{Store: kv, Shards: shards, Deliverer: h.d, Clock: h.clock.Now, Logger: logger,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.e.Stop)
	return h, kv
}

// TestOutboxLateApplyLosesToLaterCommand: the entry of a conv/add applied
// again after a later conv/remove's entry (an old coordinator's apply
// still under way when the lease moved, or a replay) leaves the member
// removed: the entry's writes carry the version its command took, below
// the remove's, not one taken when they are applied.
func TestOutboxLateApplyLosesToLaterCommand(t *testing.T) {
	h, kv := clusterHarness(t)
	tom := h.caller("Tom", 1)
	cid := h.start(tom)
	member := outsider(t, h, h.e.shards.ConvShard(testApp, cid))
	h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if !h.indexed(member, cid) {
		t.Fatal("the add's effects were not applied")
	}
	// The add's entry, applied and kept until the conversation's next
	// commit: what the old coordinator still has in hand.
	var addKey, addEntry []byte
	prefix := store.OutboxKey(h.e.shards.ConvShard(testApp, cid), testApp, cid).Bytes()
	err := kv.ScanPrefix(prefix, false, func(k, v []byte) (bool, error) {
		if _, err := decodeOutboxOps(v); err != nil {
			return false, err
		}
		addKey, addEntry = slices.Clone(k), slices.Clone(v)
		return false, nil
	})
	if err != nil || addKey == nil {
		t.Fatalf("the add's outbox entry: %v", err)
	}
	if outboxVersion(addKey) == 0 {
		t.Fatalf("the add's entry %x carries no version", addKey)
	}

	h.do(tom, convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if h.indexed(member, cid) {
		t.Fatal("the remove's effects were not applied")
	}
	if err := h.e.applyEntry(addKey, addEntry); err != nil {
		t.Fatal(err)
	}
	if h.indexed(member, cid) {
		t.Fatal("the add's entry applied after the remove indexed the member again")
	}
}

// TestOutboxLoopStopsBetweenShards: a stopping engine's drainer does not go
// on to the next shard. A scan of a shard the node no longer coordinates
// retries for a while before it fails, and the drainer walked every shard
// that way after Stop, holding a node's shutdown for minutes.
func TestOutboxLoopStopsBetweenShards(t *testing.T) {
	h := newHarness(t)
	h.e.cfg.OutboxInterval = time.Millisecond
	isOutbox := func(lower []byte) bool {
		for s := range h.e.shards.Count() {
			if bytes.HasPrefix(lower, store.OutboxPrefix(uint16(s)).Bytes()) {
				return true
			}
		}
		return false
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var scans atomic.Int32
	hook := func(lower []byte) {
		if !isOutbox(lower) {
			return
		}
		scans.Add(1)
		select {
		case entered <- struct{}{}:
			<-release
		default:
		}
	}
	h.kv.scan.Store(&hook)
	ctx, cancel := context.WithCancel(t.Context())
	h.e.Start(ctx)
	<-entered // the drainer is in its first shard's scan
	cancel()  // as Stop does before it waits for the drainer
	close(release)
	h.e.Stop()
	if n := scans.Load(); n != 1 {
		t.Fatalf("the drainer scanned %d shards' outboxes, want 1: it went on after its context was cancelled", n)
	}
}
