package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

// TestChaosLedgerAttributesErrors: every client-visible error is recorded
// with its answer, node, command and the fault in progress, and the errors
// a lost coordinator causes (a 4200 naming it, or no answer at all) fail
// the run while a dropped socket of a killed node does not. A ledger that
// filed a coordinator's 4200 as allowed would let every chaos run pass.
func TestChaosLedgerAttributesErrors(t *testing.T) {
	server := func(pe *protocol.Error, detail string) error {
		return &client.Error{Code: pe.Code, Reason: pe.Reason, Detail: detail}
	}
	for _, tt := range []struct {
		name  string
		err   error
		cause string
	}{
		{"no coordinator", server(protocol.ErrUnavailable, protocol.DetailNoCoordinator), CauseCoordinator},
		{"quorum", server(protocol.ErrUnavailable, protocol.DetailQuorum), CauseCoordinator},
		{"coordinator silent", server(protocol.ErrUnavailable, protocol.DetailCoordinatorSilent), CauseCoordinator},
		{"budget used up at the gateway", server(protocol.ErrUnavailable, "request timed out"), CauseCoordinator},
		{"no answer", fmt.Errorf("send: %w", context.DeadlineExceeded), CauseNoAnswer},
		{"rejected", server(protocol.ErrConversationNotFound, ""), CauseRejected},
		{"socket dropped", client.ErrConnectionLost, CauseGateway},
		{"socket down", client.ErrNotConnected, CauseGateway},
		{"gateway stopping", server(protocol.ErrUnavailable, "node shutting down"), CauseGateway},
		{"internal", server(protocol.ErrInternal, ""), CauseServer},
	} {
		if got := Cause(tt.err); got != tt.cause {
			t.Errorf("%s: cause %q, want %q", tt.name, got, tt.cause)
		}
	}

	l := NewLedger()
	l.NameNodes(map[string]string{"ws://127.0.0.1:1": "imnode-0"})
	l.Failed(client.ErrConnectionLost, "s0", "ws://127.0.0.1:1", "direct", time.Now())
	l.FaultStarted("kill+restart imnode-1")
	l.Failed(server(protocol.ErrUnavailable, protocol.DetailNoCoordinator), "s1", "ws://127.0.0.1:1", "direct", time.Now())
	started := time.Now() // an attempt that outlasts the fault is the fault's
	l.FaultEnded()
	l.Failed(server(protocol.ErrUnavailable, protocol.DetailNoCoordinator), "s2", "ws://127.0.0.1:1", "direct", started)
	l.Failed(server(protocol.ErrUnavailable, protocol.DetailQuorum), "s1", "ws://127.0.0.1:2", "direct", time.Now())

	sum := Summary{ErrorGroups: l.ErrorGroups()}
	failing := sum.Failing()
	if len(failing) != 2 {
		t.Fatalf("failing groups %v, want the two coordinator-loss groups", failing)
	}
	during, between := failing[0], failing[1]
	if during.Count != 2 || during.Fault != "kill+restart imnode-1" || during.Node != "imnode-0" || during.Command != "direct" ||
		during.Code != 4200 || during.Detail != protocol.DetailNoCoordinator {
		t.Errorf("first failing group %+v, want 2 no-coordinator answers via imnode-0 during the kill", during)
	}
	if between.Count != 1 || between.Fault != BetweenFaults || between.Node != "" || between.Detail != protocol.DetailQuorum {
		t.Errorf("second failing group %+v, want 1 quorum answer between faults via an unknown node", between)
	}
	if got := sum.ByCause(); got[CauseCoordinator+"(FAILS)"] != 3 || got[CauseGateway] != 1 {
		t.Errorf("by cause %v", got)
	}
}
