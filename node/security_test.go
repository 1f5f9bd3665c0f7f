package node

import (
	"errors"
	"testing"

	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/ring"
)

func TestNodeAuthorizeMember(t *testing.T) {
	snap := &membership.Snapshot{Self: "a", Members: []membership.Member{
		{Meta: membership.Meta{ID: "a", State: ring.StateActive}},
		{Meta: membership.Meta{ID: "b", State: ring.StateJoining}},
		{Meta: membership.Meta{ID: "c", State: ring.StateLeft}},
	}}
	tests := []struct {
		peer, reason string
	}{
		{"a", ""},
		{"b", ""},
		{"c", refuseLeft},
		{"d", refuseUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			err := authorizeMember(snap, tt.peer)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("authorize %s = %v, want allowed", tt.peer, err)
				}
				return
			}
			re, ok := errors.AsType[*peerRefusalError](err)
			if !ok || re.RefusalReason() != tt.reason || !errors.Is(err, errPeerNotMember) {
				t.Fatalf("authorize %s = %v, want a refusal for reason %q", tt.peer, err, tt.reason)
			}
		})
	}
	var n Node
	if err := n.authorizePeer("a"); err == nil || err.(*peerRefusalError).RefusalReason() != refuseNotStarted {
		t.Fatalf("authorize before start = %v, want refused (not_started)", err)
	}
}
