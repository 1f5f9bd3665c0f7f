package conversation

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// convUpdate implements conv/update (spec 3.7): a column map with dot paths
// and LeanCloud __op operations.
func (e *Engine) convUpdate(ctx context.Context, c Caller, cm *pb.ConvCommand) (*pb.GenericCommand, error) {
	st := e.convStripe(c.App, cm.GetCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	var recipients []string
	switch r.Kind {
	case convTemporary:
		return nil, protocol.ErrNormalConversationRequired.WithDetail("temporary conversations cannot be updated")
	case convTransient:
		ids, err := e.roomList(c.App, r.ID)
		if err != nil {
			return nil, err
		}
		if !c.Server() && c.ClientID != r.Creator && !slices.Contains(ids, c.ClientID) {
			return nil, protocol.ErrConversationUpdateRejected
		}
		recipients = ids
	default:
		if !c.Server() && !r.isMember(c.ClientID) {
			return nil, protocol.ErrConversationUpdateRejected
		}
		recipients = r.Members
	}
	changes, err := parseAttr(cm.Attr)
	if err != nil {
		return nil, err
	}
	if r.Columns == nil {
		r.Columns = map[string]any{}
	}
	modified, err := applyChanges(r.Columns, changes)
	if err != nil {
		return nil, err
	}
	if err := checkColumns(r.Columns); err != nil {
		return nil, err
	}
	modJSON, _ := json.Marshal(modified)
	if len(changes) == 0 {
		return convResponse(pb.OpType_updated, &pb.ConvCommand{Cid: strp(r.ID), Udate: isoDate(r.Updated),
			AttrModified: protocol.JSON(string(modJSON))}), nil
	}
	r.Updated = e.nowMs()
	udate := protocol.ISODate(r.Updated)
	attrJSON, _ := json.Marshal(changes)
	p := newPush(pb.CommandType_conv, pb.OpType_updated.Enum())
	p.ConvMessage = &pb.ConvCommand{Cid: strp(r.ID), InitBy: strp(c.ClientID), Udate: strp(udate),
		Attr: protocol.JSON(string(attrJSON)), AttrModified: protocol.JSON(string(modJSON))}
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	if r.Kind == convNormal {
		e.reliable(b, c.App, recipients, p)
	}
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return nil, internal("commit update", err)
	}
	e.emit(st, push{app: c.App, to: recipients, except: c.Session, cmd: p})
	return convResponse(pb.OpType_updated, &pb.ConvCommand{Cid: strp(r.ID), Udate: strp(udate),
		AttrModified: protocol.JSON(string(modJSON))}), nil
}

// applyChanges applies a change map to cols in key order and returns each
// changed key with its resulting value (a Delete yields its __op object).
func applyChanges(cols, changes map[string]any) (map[string]any, error) {
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	modified := make(map[string]any, len(keys))
	for _, k := range keys {
		v, err := applyChange(cols, k, changes[k])
		if err != nil {
			return nil, err
		}
		modified[k] = v
	}
	return modified, nil
}

func applyChange(cols map[string]any, key string, val any) (any, error) {
	path := strings.Split(key, ".")
	if slices.Contains(path, "") {
		return nil, protocol.ErrConversationUpdateFailed.WithDetail("bad key %q", key)
	}
	if reservedColumns[path[0]] {
		return nil, protocol.ErrConversationUpdateFailed.WithDetail("column %q is reserved", path[0])
	}
	parent := cols
	for _, seg := range path[:len(path)-1] {
		child, ok := parent[seg].(map[string]any)
		if !ok {
			child = map[string]any{}
			parent[seg] = child
		}
		parent = child
	}
	last := path[len(path)-1]
	opObj, isOp := val.(map[string]any)
	opName, _ := opObj["__op"].(string)
	if !isOp || opName == "" {
		parent[last] = val
		return val, nil
	}
	switch opName {
	case "Delete":
		delete(parent, last)
		return opObj, nil
	case "Add", "AddUnique", "Remove":
		objs, ok := opObj["objects"].([]any)
		if !ok {
			return nil, protocol.ErrConversationUpdateFailed.WithDetail("%s on %q needs objects", opName, key)
		}
		cur, _ := parent[last].([]any)
		parent[last] = arrayOp(opName, append([]any(nil), cur...), objs)
	case "Increment":
		amount := 1.0
		if a, ok := opObj["amount"].(float64); ok {
			amount = a
		}
		cur, _ := parent[last].(float64)
		if math.IsInf(cur+amount, 0) {
			return nil, protocol.ErrConversationUpdateFailed.WithDetail("Increment on %q overflows", key)
		}
		parent[last] = cur + amount
	default:
		return nil, protocol.ErrConversationUpdateFailed.WithDetail("unsupported __op %q", opName)
	}
	return parent[last], nil
}

func arrayOp(op string, cur, objs []any) []any {
	switch op {
	case "Add":
		return append(cur, objs...)
	case "AddUnique":
		for _, o := range objs {
			if !slices.ContainsFunc(cur, func(x any) bool { return reflect.DeepEqual(x, o) }) {
				cur = append(cur, o)
			}
		}
		return cur
	default: // Remove
		return slices.DeleteFunc(cur, func(x any) bool {
			return slices.ContainsFunc(objs, func(o any) bool { return reflect.DeepEqual(x, o) })
		})
	}
}

// convMute implements conv/mute and conv/unmute (spec 3.14.1).
func (e *Engine) convMute(_ context.Context, c Caller, cm *pb.ConvCommand, mute bool) (*pb.GenericCommand, error) {
	st := e.convStripe(c.App, cm.GetCid())
	st.mu.Lock()
	defer e.unlockAndDrain(st)
	r, err := e.loadLive(c.App, cm.GetCid())
	if err != nil {
		return nil, err
	}
	if mute {
		r.Muted = setAdd(r.Muted, c.ClientID)
	} else {
		r.Muted = setRemove(r.Muted, c.ClientID)
	}
	r.Updated = e.nowMs()
	b := e.st.NewBatch()
	e.putConv(b, c.App, r)
	if err := e.commitConv(st, c.App, r.ID, b); err != nil {
		return nil, internal("commit mute", err)
	}
	return convResponse(pb.OpType_updated, &pb.ConvCommand{Cid: strp(r.ID), Udate: isoDate(r.Updated)}), nil
}
