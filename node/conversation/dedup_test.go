package conversation

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// absentLookups returns the store's imnode_store_absent_lookups_total of
// result in reg.
func absentLookups(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "imnode_store_absent_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "result", result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no imnode_store_absent_lookups_total{result=%q}", result)
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestConversationDedupThroughAbsenceFilter sends a message with a dt once
// the store's absence filter of its shard answers look-ups, resends it, and
// resends it again after a restart (the filter built again from the store):
// every resend is answered with the first id and the message is stored once.
func TestConversationDedupThroughAbsenceFilter(t *testing.T) {
	fs, clock := vfs.NewMem(), &testClock{now: time.UnixMilli(1_700_000_000_000)}
	reg := prometheus.NewRegistry()
	h := openHarnessStore(t, store.Config{Dir: "db", FS: fs, CacheSize: 1 << 20, Registerer: reg}, newTestDeliverer(), clock)
	tom := h.caller("Tom", 1)
	cid := h.start(tom, "Jerry")
	withDt := func(msg, dt string) *pb.GenericCommand {
		req := directReq(cid, msg)
		req.DirectMessage.Dt = proto.String(dt)
		return req
	}
	// Sends with new dts until the filter answers one without the store.
	warm := func(h *harness, reg *prometheus.Registry) {
		t.Helper()
		n := 0
		checkFor(t, 10*time.Second, time.Millisecond, func() error {
			n++
			h.do(tom, withDt(fmt.Sprint("warm-up ", n), fmt.Sprintf("warm-%p-%d", h, n)))
			if absentLookups(t, reg, "absent") == 0 {
				return errors.New("no de-duplication look-up answered by the absence filter yet")
			}
			return nil
		})
	}
	warm(h, reg)
	first := h.do(tom, withDt("once", "the-dt")).GetAckMessage()
	present := absentLookups(t, reg, "maybe_present")
	again := h.do(tom, withDt("once", "the-dt")).GetAckMessage()
	if again.GetUid() != first.GetUid() || again.GetT() != first.GetT() {
		t.Fatalf("resend answered %s@%d, want %s@%d", again.GetUid(), again.GetT(), first.GetUid(), first.GetT())
	}
	if absentLookups(t, reg, "maybe_present") != present+1 {
		t.Fatal("the resend's look-up was not one the filter held")
	}

	reg = prometheus.NewRegistry()
	h.close()
	h = openHarnessStore(t, store.Config{Dir: "db", FS: fs, CacheSize: 1 << 20, Registerer: reg}, h.d, clock)
	warm(h, reg)
	after := h.do(tom, withDt("once", "the-dt")).GetAckMessage()
	if after.GetUid() != first.GetUid() || after.GetT() != first.GetT() {
		t.Fatalf("resend after the restart answered %s@%d, want %s@%d", after.GetUid(), after.GetT(), first.GetUid(), first.GetT())
	}
	copies := 0
	for _, l := range h.do(tom, logsReq(&pb.LogsCommand{Cid: proto.String(cid), L: proto.Int32(1000)})).GetLogsMessage().GetLogs() {
		if l.GetData() == "once" {
			copies++
		}
	}
	if copies != 1 {
		t.Fatalf("the message is stored %d times, want once", copies)
	}
}
