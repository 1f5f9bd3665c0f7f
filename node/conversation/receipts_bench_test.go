package conversation

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/imcluster/imcluster/node/protocol/pb"
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
			cids := make([]string, convs)
			receivers := make([]Caller, convs)
			for i := range cids {
				receivers[i] = h.caller("r"+strconv.Itoa(i), SessionID(i+2))
				cids[i] = h.start(tom, receivers[i].ClientID)
			}
			jobs := make([]ackJob, convs)
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				bt := h.st.NewBatch()
				clock.Advance(time.Millisecond)
				ts := clock.Now().UnixMilli()
				for i, cid := range cids {
					m := &message{ID: "m" + strconv.FormatInt(ts, 36) + strconv.Itoa(i), From: tom.ClientID, Ts: ts,
						Data: `{"_lctype":-1,"_lctext":"hello"}`, Receipt: receipt}
					h.e.putMessage(bt, testApp, cid, m)
					jobs[i] = ackJob{c: receivers[i], am: &pb.AckCommand{Cid: strp(cid), Fromts: int64p(ts), Tots: int64p(ts)}}
				}
				if err := h.st.Commit(bt); err != nil {
					b.Fatal(err)
				}
				h.d.take()
				before := cpuTime(b)
				b.StartTimer()
				if err := h.e.processAcks(b.Context(), jobs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime(b) - before
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*convs), "ns/ack")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*convs), "cpu-ns/ack")
		})
	}
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
