package protocol

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// ServiceIM is GenericCommand.service for instant-messaging frames. The Swift
// SDK drops IM pushes that do not carry it.
const ServiceIM = 2

// NotificationReliable marks a push that is persisted server side and can be
// replayed through GET /1.1/rtm/notifications.
const NotificationReliable = 1

// MaxContentSize is the message content limit (content plus pushData).
const MaxContentSize = 5 << 10

// Response builds the response frame for req: same i, service 2, the given
// cmd/op. op may be nil for commands without an op.
func Response(req *pb.GenericCommand, cmd pb.CommandType, op *pb.OpType) *pb.GenericCommand {
	r := &pb.GenericCommand{Cmd: cmd.Enum(), Op: op, Service: proto.Int32(ServiceIM)}
	if req.I != nil {
		r.I = proto.Int32(req.GetI())
	}
	if req.PeerId != nil {
		r.PeerId = proto.String(req.GetPeerId())
	}
	return r
}

// ErrorResponse builds the `error` frame answering req.
func ErrorResponse(req *pb.GenericCommand, e *Error) *pb.GenericCommand {
	r := Response(req, pb.CommandType_error, nil)
	r.ErrorMessage = e.Proto()
	return r
}

// Push builds a server-initiated frame to peerID: no i, service 2.
func Push(peerID string, cmd pb.CommandType, op *pb.OpType) *pb.GenericCommand {
	return &pb.GenericCommand{Cmd: cmd.Enum(), Op: op, Service: proto.Int32(ServiceIM), PeerId: proto.String(peerID)}
}

// Op returns a pointer to op, for building frames.
func Op(op pb.OpType) *pb.OpType { return op.Enum() }

// Millis converts t to protocol milliseconds.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// ISODate formats a time the way conversation records carry createdAt,
// updatedAt, cdate and udate: ISO-8601 UTC with milliseconds.
func ISODate(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// JSON wraps a JSON document for the JsonObjectMessage fields.
func JSON(data string) *pb.JsonObjectMessage { return &pb.JsonObjectMessage{Data: proto.String(data)} }
