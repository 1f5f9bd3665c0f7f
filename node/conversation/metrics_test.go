package conversation

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// series returns each series of c by its label values joined with "|":
// a counter's value, a histogram's sample count.
func series(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		key := ""
		for i, l := range d.GetLabel() {
			if i > 0 {
				key += "|"
			}
			key += l.GetValue()
		}
		if d.GetHistogram() != nil {
			out[key] = float64(d.GetHistogram().GetSampleCount())
		} else {
			out[key] = d.GetCounter().GetValue()
		}
	}
	return out
}

// TestCommandMetricsPerCommandAndResult runs commands of several types,
// ops and results, each type more than once so the later ones take the
// cached series, and checks that every one is counted under its own
// command name and result, and that no other series exists.
func TestCommandMetricsPerCommandAndResult(t *testing.T) {
	h := newHarness(t)
	alice := h.caller("alice", 1)
	for range 2 {
		cid := h.start(alice, "bob")
		h.send(alice, cid, "hi")
		h.send(alice, cid, "again")
		h.fail(alice, directReq("no-such-conversation", "x"), protocol.ErrInvalidMessagingTarget)
		// An op outside the schema (one within the cache's slots, one
		// beyond them) collapses to conv/unknown.
		for _, op := range []int32{250, 4000} {
			req := &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType(op).Enum(), I: proto.Int32(1)}
			if _, err := h.e.Handle(t.Context(), alice, req); err == nil {
				t.Fatalf("conv op %d: no error", op)
			}
		}
	}
	wantCommands := map[string]float64{
		"conv/start|ok":             2,
		"direct|ok":                 4,
		"direct|client_error":       2,
		"conv/unknown|client_error": 4,
	}
	if got := series(t, h.e.metrics.commands); !maps.Equal(got, wantCommands) {
		t.Errorf("imnode_conversation_commands_total = %v, want %v", got, wantCommands)
	}
	wantDurations := map[string]float64{"conv/start": 2, "direct": 6, "conv/unknown": 4}
	if got := series(t, h.e.metrics.duration); !maps.Equal(got, wantDurations) {
		t.Errorf("imnode_conversation_command_duration_seconds samples = %v, want %v", got, wantDurations)
	}
}
