package conversation

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkConversationDirect sends messages in parallel over 100 one-to-one
// conversations on a real on-disk store (fsync'd commits).
func BenchmarkConversationDirect(b *testing.B) {
	h := openHarness(b, vfs.Default, b.TempDir(), newTestDeliverer(), &testClock{now: time.UnixMilli(1_700_000_000_000)})
	const convs = 100
	cids := make([]string, convs)
	for i := range cids {
		c := h.caller("u"+strconv.Itoa(i), SessionID(i+1))
		cids[i] = h.start(c, "peer"+strconv.Itoa(i))
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1) % convs)
			h.send(Caller{App: testApp, ClientID: "u" + strconv.Itoa(i), Session: SessionID(i + 1)}, cids[i], `{"_lctype":-1,"_lctext":"hi"}`)
		}
	})
}
