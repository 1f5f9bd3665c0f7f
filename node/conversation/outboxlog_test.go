package conversation

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
	"github.com/imcluster/imcluster/node/wire"
)

// logLines is a slog handler that keeps the messages logged.
type logLines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

// count returns how many messages contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// TestOutboxDiskLowLoggedOncePerMinute: while a target shard refuses the
// outbox's writes for a full disk the drainer retries every round, counts
// each failure in the metric, and logs the refusal once a minute, not on
// every retry; once space is back the effects apply.
func TestOutboxDiskLowLoggedOncePerMinute(t *testing.T) {
	h, tom, cid, member := outboxScene(t)
	h.e.cfg.OutboxWait = 20 * time.Millisecond
	logs := &logLines{}
	h.e.log = slog.New(logs)
	h.caller(member, 2)
	target := h.e.shards.ClientShard(testApp, member)
	full := func(b *store.Batch) error {
		for _, op := range b.Ops() {
			if s, _ := store.ShardOf(op.Key); s == target {
				return wire.Wrap(wire.ErrDiskLow, errShardDown)
			}
		}
		return nil
	}
	h.kv.fail.Store(&full)
	h.e.Start(t.Context())

	resp := h.do(tom, convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}}))
	if !slices.Equal(resp.GetConvMessage().GetAllowedPids(), []string{member}) {
		t.Fatalf("add answered %v", resp)
	}
	failed := func() int {
		var m dto.Metric
		if err := h.e.metrics.outbox.WithLabelValues("failed").Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	eventually(t, "ten refused rounds", func() bool { return failed() >= 10 })
	const msg = "storage full"
	if n := logs.count(msg); n != 1 {
		t.Fatalf("%d refused rounds logged %d times, want once", failed(), n)
	}
	if n := logs.count("failed; retrying later"); n != 0 {
		t.Fatalf("a refusal for a full disk logged as a failure %d times", n)
	}
	h.clock.Advance(outboxDiskLowLogEvery)
	eventually(t, "the refusal logged again a minute later", func() bool { return logs.count(msg) == 2 })
	h.kv.fail.Store(nil)
	eventually(t, "index after space is back", func() bool { return h.indexed(member, cid) && h.outboxLen(cid) == 0 })
	if n := logs.count(msg); n != 2 {
		t.Fatalf("the refusal logged %d times, want 2", n)
	}
}
