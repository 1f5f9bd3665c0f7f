package conversation

import (
	"context"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/protocol"
)

// A temporary silence refuses the member's sends with 4315 until its ttl
// has passed, then lets them through without anybody lifting it.
func TestTempSilenceExpires(t *testing.T) {
	h := newHarness(t)
	tom, jerry := h.caller("Tom", 1), h.caller("Jerry", 2)
	cid := h.start(tom, "Jerry")
	ctx := context.Background()
	if err := h.e.TempSilence(ctx, testApp, cid, "Jerry", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	h.fail(jerry, directReq(cid, "muffled"), protocol.ErrConversationBlacklisted)
	h.send(tom, cid, "Tom is not silenced")
	h.clock.Advance(9 * time.Minute)
	h.fail(jerry, directReq(cid, "still muffled"), protocol.ErrConversationBlacklisted)
	h.clock.Advance(2 * time.Minute)
	h.send(jerry, cid, "free again")
	if err := h.e.TempSilence(ctx, testApp, cid, "Jerry", 25*time.Hour); err == nil {
		t.Fatal("a silence longer than a day was accepted")
	}
}
