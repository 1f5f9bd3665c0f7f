package conversation

import (
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/protocol/pb"
	testharness "github.com/imcluster/imcluster/test/harness"
)

// BenchmarkConversationReceiverAcks runs the ack loop's work (processAcks)
// on batches of 64 receiver acks, one per one-to-one conversation, each
// acknowledging the one message sent there since the last round (the
// JS SDK's {cid, fromts, tots} ack), on a real on-disk store. Besides the
// wall time per ack (which includes waiting for the disk) it reports
// cpu-ns/ack, the process's CPU time (user and system, every goroutine,
// Pebble's included) per ack: the figure the ack loop's cost is compared
// by on a shared machine. "receipt" sends the messages with r=true, so
// every ack also stores and pushes a delivery receipt.
func BenchmarkConversationReceiverAcks(b *testing.B) {
	benchRounds(b, "ack", func(b *testing.B, h *harness, round []benchMsg) {
		jobs := make([]ackJob, len(round))
		for i, m := range round {
			jobs[i] = ackJob{c: m.to, am: &pb.AckCommand{Cid: strp(m.cid), Fromts: int64p(m.ts), Tots: int64p(m.ts)}}
		}
		if err := h.e.processAcks(b.Context(), jobs); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkConversationReads runs `read` commands like
// BenchmarkConversationReceiverAcks runs acks: each round, in each of 64
// one-to-one conversations, the receiver reads the one message sent since
// the last round (the read pointer moves, the unread count is sent to the
// reader's other session, and with "receipt" a read receipt is stored and
// pushed to the sender).
func BenchmarkConversationReads(b *testing.B) {
	benchRounds(b, "read", func(b *testing.B, h *harness, round []benchMsg) {
		for _, m := range round {
			if err := h.e.handleRead(b.Context(), m.to, readReq(m.cid, m.ts, m.id)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchMsg is one message of a benchmark round.
type benchMsg struct {
	cid, id string
	ts      int64
	to      Caller
}

// benchRounds runs op on rounds of one message in each of 64 one-to-one
// conversations (their timestamps assigned as a send assigns them, stored
// directly, one synced batch per round, untimed),
// without and with r=true, reporting wall and process CPU time per
// message of a round (unit "ns/"+unit and "cpu-ns/"+unit).
func benchRounds(b *testing.B, unit string, op func(b *testing.B, h *harness, round []benchMsg)) {
	for _, receipt := range []bool{false, true} {
		name := "plain"
		if receipt {
			name = "receipt"
		}
		b.Run(name, func(b *testing.B) {
			const convs = 64
			clock := &testClock{now: time.UnixMilli(1_700_000_000_000)}
			h := openHarness(b, vfs.Default, b.TempDir(), newTestDeliverer(), clock)
			tom := h.caller("tom", 1)
			round := make([]benchMsg, convs)
			for i := range round {
				round[i].to = h.caller("r"+strconv.Itoa(i), SessionID(i+2))
				h.caller(round[i].to.ClientID, SessionID(1000+i)) // a second session, sent the unread counts
				round[i].cid = h.start(tom, round[i].to.ClientID)
			}
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				bt := h.st.NewBatch()
				clock.Advance(time.Millisecond)
				for i := range round {
					// The timestamp is assigned as a send assigns it.
					st := h.e.convStripe(testApp, round[i].cid)
					st.mu.Lock()
					ts, _, err := h.e.nextTsLocked(st, testApp, round[i].cid, true)
					st.mu.Unlock()
					if err != nil {
						b.Fatal(err)
					}
					m := &message{ID: "m" + strconv.FormatInt(ts, 36) + strconv.Itoa(i), From: tom.ClientID, Ts: ts,
						Data: `{"_lctype":-1,"_lctext":"hello"}`, Receipt: receipt}
					h.e.putMessage(bt, testApp, round[i].cid, m)
					round[i].id, round[i].ts = m.ID, ts
				}
				if err := h.st.Commit(bt); err != nil {
					b.Fatal(err)
				}
				h.d.take()
				before := testharness.ProcessCPU(b)
				b.StartTimer()
				op(b, h, round)
				b.StopTimer()
				cpu += testharness.ProcessCPU(b) - before
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*convs), "ns/"+unit)
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*convs), "cpu-ns/"+unit)
		})
	}
}
