package conversation

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// fakePush records pushes; fail makes SendPush fail.
type fakePush struct {
	mu   sync.Mutex
	got  []PushNotification
	fail bool
}

func (p *fakePush) PushApps() []string          { return []string{testApp} }
func (p *fakePush) PushEnabled(app string) bool { return app == testApp }
func (p *fakePush) SendPush(_ context.Context, n PushNotification) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("push service down")
	}
	p.got = append(p.got, n)
	return nil
}

func (p *fakePush) take() []PushNotification {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.got
	p.got = nil
	return out
}

// runPushes runs one pass of the push loop over every shard.
func (h *harness) runPushes() {
	for shard := range uint16(16) {
		h.e.pushShard(context.Background(), testApp, shard)
	}
}

func (h *harness) pushEntries() int {
	n := 0
	for shard := range uint16(16) {
		_ = h.st.ScanPrefix(store.NewKey(shard, testApp, store.FamPush).Bytes(), false, func(_, _ []byte) (bool, error) {
			n++
			return true, nil
		})
	}
	return n
}

func TestOfflinePush(t *testing.T) {
	h := newHarness(t)
	fp := &fakePush{}
	h.e.cfg.Push = fp
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry", "Mary") // Mary has no session: offline
	mid, _ := h.send(tom, cid, `{"_lctype":-1,"_lctext":"hi Mary"}`)
	h.runPushes()
	got := fp.take()
	if len(got) != 1 || got[0].MsgID != mid || !slices.Equal(got[0].Recipients, []string{"Mary"}) ||
		got[0].Payload["alert"] != "hi Mary" || got[0].Payload["badge"] != "Increment" || got[0].Payload["convid"] != cid ||
		got[0].Source != "default" || got[0].From != "Tom" {
		t.Fatalf("push %+v", got)
	}
	if n := h.pushEntries(); n != 0 {
		t.Fatalf("%d push entries after a sent push", n)
	}

	// pushData wins over the defaults; an image has a placeholder alert.
	dm := directReq(cid, `{"_lctype":-2,"_lcfile":{"url":"x"}}`)
	dm.DirectMessage.PushData = proto.String(`{"alert":"custom","sound":"ding"}`)
	h.do(jerry, dm)
	h.send(jerry, cid, `{"_lctype":-2,"_lcfile":{"url":"x"}}`)
	h.runPushes()
	got = fp.take()
	alerts := []string{}
	for _, n := range got {
		alerts = append(alerts, n.Payload["alert"].(string))
	}
	slices.Sort(alerts)
	if !slices.Equal(alerts, []string{"[Image]", "custom"}) {
		t.Fatalf("alerts %v", alerts)
	}

	// Mary mutes: no push.
	mary := h.caller("Mary", 3)
	h.do(mary, convReq(pb.OpType_mute, &pb.ConvCommand{Cid: proto.String(cid)}))
	h.d.disconnect("Mary", 3)
	h.send(tom, cid, "muted")
	h.runPushes()
	if got := fp.take(); len(got) != 0 {
		t.Fatalf("push to a muted member %+v", got)
	}
	h.do(h.caller("Mary", 4), convReq(pb.OpType_unmute, &pb.ConvCommand{Cid: proto.String(cid)}))
	h.d.disconnect("Mary", 4)

	// The push service is down: the entry stays, with back-off; the next
	// coordinator (a new engine on the same store) sends it once, with
	// the same idempotency key.
	fp.fail = true
	mid, _ = h.send(tom, cid, "retry me")
	h.runPushes()
	if n := h.pushEntries(); n != 1 {
		t.Fatalf("%d entries after a failed push", n)
	}
	h.runPushes() // not due yet
	h2 := h.reopen()
	fp.fail = false
	h2.e.cfg.Push = fp
	h2.runPushes()
	if got := fp.take(); len(got) != 0 {
		t.Fatalf("pushed before the back-off passed: %+v", got)
	}
	h2.clock.Advance(2 * time.Second)
	h2.runPushes()
	h2.runPushes()
	got = fp.take()
	if len(got) != 1 || got[0].MsgID != mid || got[0].Attempt != 1 || IdempotencyKey(got[0].MsgID, got[0].Recipients[0]) != mid+":Mary" {
		t.Fatalf("retried push %+v", got)
	}
	if n := h2.pushEntries(); n != 0 {
		t.Fatalf("%d entries after the retry", n)
	}

	// Chat rooms never push; transient messages neither.
	tr := directReq(cid, "now or never")
	tr.DirectMessage.Transient = proto.Bool(true)
	h2.do(h2.caller("Tom", 5), tr)
	if n := h2.pushEntries(); n != 0 {
		t.Fatalf("transient message queued %d pushes", n)
	}
}
