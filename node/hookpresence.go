package node

import (
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/gateway"
	"github.com/imcluster/imcluster/node/hooks"
)

// hookPresence passes session openings to the cluster's presence and
// notifies the app's _clientOnline hook (_clientOffline comes from the
// engine, which knows whether the session ended cleanly).
type hookPresence struct {
	gateway.Presence
	hooks *hooks.Hooks
}

func (p hookPresence) Opened(app, clientID, tag, deviceID string, s conversation.SessionID) {
	p.Presence.Opened(app, clientID, tag, deviceID, s)
	if tag == "" {
		tag = "default"
	}
	p.hooks.Notify(app, "_clientOnline", map[string]any{"peerId": clientID, "tag": tag, "sourceIP": nil, "reconnect": 0})
}
