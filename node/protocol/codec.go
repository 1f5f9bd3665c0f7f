package protocol

import (
	"encoding/base64"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Subprotocol names negotiated in Sec-WebSocket-Protocol. The trailing digit is
// the protocol version; version 3 is "unread-notification mode".
const (
	// SubprotocolBinary frames are binary WebSocket messages holding the raw
	// protobuf encoding of one GenericCommand. It is the SDKs' default.
	SubprotocolBinary = "lc.protobuf2.3"
	// SubprotocolBase64 frames are text WebSocket messages holding standard
	// Base64 (with padding) of the protobuf bytes (JS SDK with noBinary).
	SubprotocolBase64 = "lc.proto2base64.3"
)

// Subprotocols lists the subprotocols the server accepts, in preference order.
var Subprotocols = []string{SubprotocolBinary, SubprotocolBase64}

// MaxFrameSize bounds one WebSocket frame. Message content is limited to 5 KB
// (MaxContentSize); the rest is room for the envelope, mention lists and
// conversation queries with large where clauses and member lists (500 ids of
// up to 64 bytes each, plus Base64 overhead).
const MaxFrameSize = 128 << 10

// ErrFrame is returned (wrapped) for any frame that cannot be decoded.
var ErrFrame = errors.New("protocol: malformed frame")

// Decode parses one WebSocket frame. text reports whether the frame arrived as
// a text message: the JS SDK decodes text frames as Base64 and binary frames as
// raw bytes regardless of the negotiated subprotocol, and so does the server.
// The returned command is owned by the caller. Decode never panics.
func Decode(frame []byte, text bool) (*pb.GenericCommand, error) {
	if len(frame) > MaxFrameSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrFrame, len(frame), MaxFrameSize)
	}
	raw := frame
	if text {
		buf := make([]byte, base64.StdEncoding.DecodedLen(len(frame)))
		n, err := base64.StdEncoding.Decode(buf, trimSpace(frame))
		if err != nil {
			return nil, fmt.Errorf("%w: base64: %v", ErrFrame, err)
		}
		raw = buf[:n]
	}
	cmd := &pb.GenericCommand{}
	// AllowPartial: a client frame that omits a proto2 required field in some
	// nested message is still accepted; the handlers validate what they use.
	if err := (proto.UnmarshalOptions{AllowPartial: true, DiscardUnknown: true}).Unmarshal(raw, cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFrame, err)
	}
	return cmd, nil
}

// Encode serializes cmd for the given subprotocol and reports whether it must
// be sent as a text frame. Encoding enforces proto2 required fields, so a frame
// the SDK could not decode is never sent.
func Encode(cmd *pb.GenericCommand, subprotocol string) (frame []byte, text bool, err error) {
	raw, err := proto.Marshal(cmd)
	if err != nil {
		return nil, false, fmt.Errorf("protocol: encode %v: %w", cmd.GetCmd(), err)
	}
	if subprotocol == SubprotocolBase64 {
		out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
		base64.StdEncoding.Encode(out, raw)
		return out, true, nil
	}
	return raw, false, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ') {
		b = b[1:]
	}
	return b
}
