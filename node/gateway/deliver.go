package gateway

import (
	"encoding/base64"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Deliver implements conversation.Deliverer: it writes cmd to every open
// session of the given clients except the session `except`, with peerId set
// to the receiving client. It never blocks: a socket whose queue is full is
// handed to a goroutine of its own that closes it as a slow consumer
// (conn.slow), and the other recipients are served meanwhile.
//
// The frame is marshalled once; each recipient's frame gets its peerId
// field appended (protobuf decoders accept fields in any order).
func (g *Gateway) Deliver(app string, clientIDs []string, except conversation.SessionID, cmd *pb.GenericCommand) {
	if cmd.PeerId != nil || cmd.I != nil {
		cmd = proto.CloneOf(cmd)
		cmd.PeerId, cmd.I = nil, nil
	}
	if cmd.Service == nil {
		cmd = proto.CloneOf(cmd)
		cmd.Service = proto.Int32(protocol.ServiceIM)
	}
	base, err := proto.Marshal(cmd)
	if err != nil {
		g.log.Error("Dropping unencodable push", "cmd", cmd.GetCmd().String(), "err", err)
		return
	}
	g.DeliverEncoded(app, clientIDs, except, base)
}

// DeliverEncoded is Deliver for a frame already marshalled without peerId
// and i (pushes relayed from another node). It never blocks.
//
// Every binary socket's frame shares base: its receiver's peerId is
// appended as the frame is written (outFrame.peer), so a push costs no
// copy per receiver; a base64 socket's frame is encoded once per client.
func (g *Gateway) DeliverEncoded(app string, clientIDs []string, except conversation.SessionID, base []byte) {
	sessions := g.reg.sessionsOf(app, clientIDs)
	var b64 []byte
	for i, s := range sessions {
		if i == 0 || s.clientID != sessions[i-1].clientID {
			b64 = nil // the client's base64 sessions share its frame
		}
		if s.id == except {
			continue
		}
		if s.conn.sub == protocol.SubprotocolBase64 {
			if b64 == nil {
				raw := withPeerID(base, s.clientID)
				b64 = make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
				base64.StdEncoding.Encode(b64, raw)
			}
			s.conn.push(outFrame{data: b64, text: true})
			continue
		}
		s.conn.push(outFrame{data: base, peer: s.clientID})
	}
	g.metrics.pushes.Add(float64(len(sessions)))
}

// Online implements conversation.Deliverer: the clients with a session on
// this node.
func (g *Gateway) Online(app string, clientIDs []string) []string {
	return g.reg.online(app, clientIDs)
}

// withPeerID appends GenericCommand field 4 (peerId) to an encoded frame.
func withPeerID(base []byte, peerID string) []byte {
	out := make([]byte, 0, len(base)+len(peerID)+3)
	out = append(out, base...)
	out = protowire.AppendTag(out, 4, protowire.BytesType)
	return protowire.AppendString(out, peerID)
}
