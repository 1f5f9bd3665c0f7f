package chaos

import (
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
)

// TestChaosCheckConversation feeds the checker replica lists with one
// violation each: a checker that cannot see a loss would make every chaos
// run pass.
func TestChaosCheckConversation(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ack := func(id string, ts int64, sent, acked int) Ack {
		return Ack{Conv: "c", ID: id, Timestamp: ts, Payload: "p-" + id,
			FirstSent: t0.Add(time.Duration(sent) * time.Second), Acked: t0.Add(time.Duration(acked) * time.Second)}
	}
	msg := func(id string, ts int64) adminapi.DebugMessage {
		return adminapi.DebugMessage{ID: id, Timestamp: ts, Data: "p-" + id}
	}
	good := []adminapi.DebugMessage{msg("a", 10), msg("b", 20), msg("c", 30)}
	acks := []Ack{ack("a", 10, 0, 1), ack("b", 20, 2, 3), ack("c", 30, 4, 5)}
	tests := []struct {
		name  string
		lists map[string][]adminapi.DebugMessage
		acks  []Ack
		check func(r *Report) int
		want  int
	}{
		{"clean", map[string][]adminapi.DebugMessage{"n0": good, "n1": good, "n2": good}, acks,
			func(r *Report) int {
				return r.Lost + r.Missing + r.Divergent + r.DuplicateIDs + r.DuplicatePayloads + r.OrderViolations + r.AckOrderViolations
			}, 0},
		{"lost everywhere", map[string][]adminapi.DebugMessage{"n0": good[:2], "n1": good[:2]}, acks,
			func(r *Report) int { return r.Lost }, 1},
		{"missing on one replica", map[string][]adminapi.DebugMessage{"n0": good, "n1": good[:2]}, acks,
			func(r *Report) int { return r.Missing*10 + r.Divergent }, 11},
		{"duplicate id", map[string][]adminapi.DebugMessage{"n0": {msg("a", 10), msg("a", 10), msg("b", 20), msg("c", 30)}}, acks,
			func(r *Report) int { return r.DuplicateIDs }, 1},
		{"equal timestamps", map[string][]adminapi.DebugMessage{"n0": {msg("a", 10), msg("b", 10)}}, acks[:1],
			func(r *Report) int { return r.OrderViolations }, 1},
		{"timestamp differs from ack", map[string][]adminapi.DebugMessage{"n0": {msg("a", 11)}}, acks[:1],
			func(r *Report) int { return r.TimestampMismatches }, 1},
		{"ack order", map[string][]adminapi.DebugMessage{"n0": {msg("b", 5), msg("a", 10)}},
			[]Ack{ack("a", 10, 0, 1), ack("b", 5, 2, 3)},
			func(r *Report) int { return r.AckOrderViolations }, 1},
		{"concurrent sends may order either way", map[string][]adminapi.DebugMessage{"n0": {msg("b", 5), msg("a", 10)}},
			[]Ack{ack("a", 10, 0, 3), ack("b", 5, 1, 2)},
			func(r *Report) int { return r.AckOrderViolations }, 0},
		{"retry stored twice", map[string][]adminapi.DebugMessage{"n0": {msg("a", 10), {ID: "a2", Timestamp: 15, Data: "p-a"}}}, acks[:1],
			func(r *Report) int { return r.DuplicatePayloads*10 + r.StoredUnacked }, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{}
			r.checkConversation("c", tt.lists, tt.acks)
			if got := tt.check(r); got != tt.want {
				t.Errorf("got %d, want %d; problems: %v", got, tt.want, r.Problems)
			}
			if failed := r.Err() != nil; failed != (tt.want != 0 && tt.name != "concurrent sends may order either way") {
				t.Errorf("Err() = %v", r.Err())
			}
		})
	}
}
