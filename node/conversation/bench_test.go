package conversation

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
	testharness "github.com/imcluster/imcluster/test/harness"
)

// BenchmarkConversationDirect sends messages in parallel over 100 one-to-one
// conversations on a real on-disk store (fsync'd commits), with the store's
// read cache off and on (the default). cpu-ns/op is the process's CPU time
// per message (the benchmark's senders included).
func BenchmarkConversationDirect(b *testing.B) {
	for _, cache := range []int64{-1, 0} {
		name := "read-cache=on"
		if cache < 0 {
			name = "read-cache=off"
		}
		b.Run(name, func(b *testing.B) {
			h := openHarnessStore(b, store.Config{Dir: b.TempDir(), FS: vfs.Default, CacheSize: 1 << 20, ReadCacheSize: cache},
				newTestDeliverer(), &testClock{now: time.UnixMilli(1_700_000_000_000)})
			const convs = 100
			cids := make([]string, convs)
			for i := range cids {
				c := h.caller("u"+strconv.Itoa(i), SessionID(i+1))
				cids[i] = h.start(c, "peer"+strconv.Itoa(i))
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			before := testharness.ProcessCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1) % convs)
					h.send(Caller{App: testApp, ClientID: "u" + strconv.Itoa(i), Session: SessionID(i + 1)}, cids[i], `{"_lctype":-1,"_lctext":"hi"}`)
				}
			})
			b.ReportMetric(float64((testharness.ProcessCPU(b)-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkConversationAddRemove adds and removes one member per
// iteration on a real on-disk store, in a conversation in its owner's
// shard: a member whose client shard is the conversation's too (every
// write in one local batch) against one in another
// shard (its index entry and notifications go through the outbox: the
// entry in the command's batch, then the apply and the entry's deletion).
func BenchmarkConversationAddRemove(b *testing.B) {
	for _, other := range []bool{false, true} {
		name := "member-in-own-shard"
		if other {
			name = "member-in-other-shard"
		}
		b.Run(name, func(b *testing.B) {
			h := openHarness(b, vfs.Default, b.TempDir(), newTestDeliverer(), &testClock{now: time.UnixMilli(1_700_000_000_000)})
			tom := h.caller("Tom", 1)
			// Tom's own notifications stay in the conversation's shard.
			own := h.e.shards.ClientShard(testApp, "Tom")
			cid := ""
			for cid == "" || h.e.shards.ConvShard(testApp, cid) != own {
				cid = h.do(tom, convReq(pb.OpType_start, &pb.ConvCommand{Unique: proto.Bool(false)})).GetConvMessage().GetCid()
			}
			member := ""
			for i := 0; member == ""; i++ {
				id := "m" + strconv.Itoa(i)
				if (h.e.shards.ClientShard(testApp, id) != own) == other {
					member = id
				}
			}
			h.e.Start(b.Context()) // runners on their own goroutines, as in a node
			add := convReq(pb.OpType_add, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}})
			remove := convReq(pb.OpType_remove, &pb.ConvCommand{Cid: proto.String(cid), M: []string{member}})
			b.ResetTimer()
			for b.Loop() {
				h.do(tom, add)
				h.do(tom, remove)
			}
		})
	}
}
