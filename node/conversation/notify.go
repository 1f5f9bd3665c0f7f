package conversation

import (
	"context"
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/store"
)

// Notification is one reliable notification (a push with notificationType
// 1) persisted for GET /1.1/rtm/notifications (spec 1.9.3).
type Notification struct {
	Cmd      pb.CommandType
	Op       pb.OpType // zero for commands without op (rcp)
	ServerTs int64
	// Push is the push frame as delivered (without peerId). Owned by the
	// caller.
	Push *pb.GenericCommand
}

// JSMap returns the flat JSON object the JS SDK expects: cmd, op (protobuf
// enum names, underscores), serverTs, notificationType 1 and the payload
// fields of the push sub-message at top level.
func (n Notification) JSMap() map[string]any {
	m := n.base(n.Op.String())
	if cm := n.Push.GetConvMessage(); cm != nil {
		convFields(m, cm, false)
	}
	if r := n.Push.GetRcpMessage(); r != nil {
		rcpFields(m, r)
	}
	return m
}

// SwiftMap returns the Swift SDK's shape: hyphenated op names and attr /
// attrModified as JSON objects.
func (n Notification) SwiftMap() map[string]any {
	m := n.base(strings.ReplaceAll(n.Op.String(), "_", "-"))
	if cm := n.Push.GetConvMessage(); cm != nil {
		convFields(m, cm, true)
	}
	if r := n.Push.GetRcpMessage(); r != nil {
		rcpFields(m, r)
	}
	return m
}

func (n Notification) base(op string) map[string]any {
	m := map[string]any{
		"cmd":              n.Cmd.String(),
		"serverTs":         n.ServerTs,
		"notificationType": protocol.NotificationReliable,
	}
	if n.Push.Op != nil {
		m["op"] = op
	}
	return m
}

func convFields(m map[string]any, cm *pb.ConvCommand, objects bool) {
	if cm.Cid != nil {
		m["cid"] = cm.GetCid()
	}
	if cm.InitBy != nil {
		m["initBy"] = cm.GetInitBy()
	}
	if len(cm.M) > 0 {
		m["m"] = cm.M
	}
	if cm.Udate != nil {
		m["udate"] = cm.GetUdate()
	}
	for key, j := range map[string]*pb.JsonObjectMessage{"attr": cm.Attr, "attrModified": cm.AttrModified} {
		if j == nil {
			continue
		}
		if objects {
			var v any
			if json.Unmarshal([]byte(j.GetData()), &v) == nil {
				m[key] = v
			}
		} else {
			m[key] = map[string]any{"data": j.GetData()}
		}
	}
	if cm.Info != nil {
		info := map[string]any{"pid": cm.Info.GetPid(), "role": cm.Info.GetRole()}
		m["info"] = info
	}
}

func rcpFields(m map[string]any, r *pb.RcpCommand) {
	if r.Id != nil {
		m["id"] = r.GetId()
	}
	if r.Cid != nil {
		m["cid"] = r.GetCid()
	}
	if r.T != nil {
		m["t"] = r.GetT()
	}
	if r.Read != nil {
		m["read"] = r.GetRead()
	}
	if r.From != nil {
		m["from"] = r.GetFrom()
	}
}

// nextServerTs returns a strictly increasing millisecond timestamp for a
// reliable push, so a client cursor (exclusive lower bound) never skips one.
func (e *Engine) nextServerTs() int64 {
	now := e.nowMs()
	e.notifMu.Lock()
	defer e.notifMu.Unlock()
	if now <= e.notifLast {
		now = e.notifLast + 1
	}
	e.notifLast = now
	return now
}

// reliable stamps cmd as a reliable notification and records it for every
// recipient in b (persisted with the change that caused it).
func (e *Engine) reliable(b *store.Batch, app string, to []string, cmd *pb.GenericCommand) *pb.GenericCommand {
	ts := e.nextServerTs()
	cmd.ServerTs = int64p(ts)
	cmd.NotificationType = int32p(protocol.NotificationReliable)
	v, err := proto.Marshal(cmd)
	if err != nil {
		// Frames are built here with every required field; keep the push
		// even if it cannot be persisted.
		e.log.Error("Persisting notification failed", "err", err)
		return cmd
	}
	for _, id := range to {
		b.Set(e.clientKey(app, id, store.FamNotif).Int64(ts).Str(e.nonce).Bytes(), v)
	}
	return cmd
}

// Notifications returns the client's reliable notifications with serverTs >
// startTs in ascending order, at most limit (zero or negative means 100,
// capped at 1000), and whether more exist. Safe for concurrent use.
func (e *Engine) Notifications(ctx context.Context, app, clientID string, startTs int64, limit int) ([]Notification, bool, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	prefix := e.clientKey(app, clientID, store.FamNotif)
	lower := prefix.Int64(startTs + 1).Bytes()
	var out []Notification
	more := false
	err := e.st.Scan(lower, store.PrefixEnd(prefix.Bytes()), false, func(k, v []byte) (bool, error) {
		if len(out) == limit {
			more = true
			return false, nil
		}
		cmd := &pb.GenericCommand{}
		if err := proto.Unmarshal(v, cmd); err != nil {
			return false, internal("decode notification", err)
		}
		out = append(out, Notification{Cmd: cmd.GetCmd(), Op: cmd.GetOp(), ServerTs: cmd.GetServerTs(), Push: cmd})
		return ctx.Err() == nil, ctx.Err()
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}
