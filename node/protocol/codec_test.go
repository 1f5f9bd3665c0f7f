package protocol

import (
	"encoding/base64"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// seedFrames are real frames of the JS SDK's login, send, query and ack.
func seedFrames() []*pb.GenericCommand {
	return []*pb.GenericCommand{
		{Cmd: pb.CommandType_session.Enum(), Op: pb.OpType_open.Enum(), I: proto.Int32(1), AppId: proto.String("APP"),
			PeerId: proto.String("alice"), SessionMessage: &pb.SessionCommand{Ua: proto.String("js/5.0.0-rc.8"),
				R: proto.Bool(false), LastPatchTime: proto.Int64(1700000000000), ConfigBitmap: proto.Int64(187)}},
		{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(7), DirectMessage: &pb.DirectCommand{Cid: proto.String("65f1"),
			Msg: proto.String(`{"_lctype":-1,"_lctext":"hello"}`), Dt: proto.String("0b4b"), MentionAll: proto.Bool(false), R: proto.Bool(true)}},
		{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_query.Enum(), I: proto.Int32(3), ConvMessage: &pb.ConvCommand{
			Where: &pb.JsonObjectMessage{Data: proto.String(`{"m":"alice"}`)}, Flag: proto.Int32(3), Sort: proto.String("-lm")}},
		{Cmd: pb.CommandType_ack.Enum(), AckMessage: &pb.AckCommand{Cid: proto.String("65f1"), Fromts: proto.Int64(1), Tots: proto.Int64(2)}},
		{Cmd: pb.CommandType_echo.Enum(), I: proto.Int32(9)},
	}
}

func TestProtocolRoundTrip(t *testing.T) {
	for _, cmd := range seedFrames() {
		for _, sub := range Subprotocols {
			frame, text, err := Encode(cmd, sub)
			if err != nil {
				t.Fatal(err)
			}
			if text != (sub == SubprotocolBase64) {
				t.Fatalf("%s: text = %v", sub, text)
			}
			got, err := Decode(frame, text)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, cmd) {
				t.Fatalf("%s: round trip changed the frame:\n got %v\nwant %v", sub, got, cmd)
			}
		}
	}
}

func TestProtocolEncodeRefusesMissingRequired(t *testing.T) {
	cmd := &pb.GenericCommand{Cmd: pb.CommandType_error.Enum(), ErrorMessage: &pb.ErrorCommand{Code: proto.Int32(4303)}}
	if _, _, err := Encode(cmd, SubprotocolBinary); err == nil {
		t.Fatal("an ErrorCommand without reason was encoded; the JS SDK could not decode it")
	}
}

func TestProtocolDecodeRejects(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		text  bool
	}{
		{"bad base64", []byte("%%%"), true},
		{"truncated varint", []byte{0x08}, false},
		{"bad wire type", []byte{0x0f}, false},
		{"oversized", make([]byte, MaxFrameSize+1), false},
	}
	for _, tt := range tests {
		if _, err := Decode(tt.frame, tt.text); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: Decode error = %v, want ErrFrame", tt.name, err)
		}
	}
}

func TestProtocolErrorTable(t *testing.T) {
	seen := map[int32]string{}
	for _, e := range []*Error{ErrAppNotAvailable, ErrInvalidLogin, ErrSessionConflict, ErrSessionTokenExpired,
		ErrConversationNotFound, ErrInvalidMessagingTarget, ErrConversationNeedOwner, ErrOperationUnauthorized,
		ErrFrameTooLong, ErrConversationQueryFailed, ErrConversationLogRejected, ErrSilenced} {
		if prev, dup := seen[e.Code]; dup && prev != e.Reason {
			t.Fatalf("code %d has two reasons: %s and %s", e.Code, prev, e.Reason)
		}
		seen[e.Code] = e.Reason
		if !errors.Is(e.WithDetail("x"), e) {
			t.Fatalf("%s: WithDetail copy does not match with errors.Is", e.Reason)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, cmd := range seedFrames() {
		raw, _ := proto.Marshal(cmd)
		f.Add(raw, false)
		f.Add([]byte(base64.StdEncoding.EncodeToString(raw)), true)
		f.Add(raw[:len(raw)/2], false)
	}
	f.Fuzz(func(t *testing.T, frame []byte, text bool) {
		cmd, err := Decode(frame, text)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode (partially: client frames may lack
		// required fields) and decode to the same command.
		raw, err := proto.MarshalOptions{AllowPartial: true}.Marshal(cmd)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		again, err := Decode(raw, false)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !proto.Equal(cmd, again) {
			t.Fatalf("round trip changed the command")
		}
	})
}
