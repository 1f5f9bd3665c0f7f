package route

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
	"github.com/imcluster/imcluster/node/wire"
)

func commandResult(t testing.TB, resp *pb.GenericCommand, pe *protocol.Error, failure string) []byte {
	t.Helper()
	var e wire.Enc
	switch {
	case pe != nil:
		encodeProtocolError(&e, pe)
	case failure != "":
		e.U64(cmdFailed)
		e.Str(failure)
	default:
		e.U64(cmdOK)
		if resp != nil {
			b, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			e.Bytes(b)
		}
	}
	return e.B
}

func TestRouteWireCommandResult(t *testing.T) {
	resp := &pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), PeerId: proto.String("alice")}
	got, err := decodeCommandResult(commandResult(t, resp, nil, ""))
	if err != nil || !proto.Equal(got, resp) {
		t.Fatalf("ok result = %v, %v", got, err)
	}
	if got, err := decodeCommandResult(commandResult(t, nil, nil, "")); got != nil || err != nil {
		t.Fatalf("empty ok result = %v, %v", got, err)
	}
	if got, err := decodeCommandResult(commandResult(t, &pb.GenericCommand{}, nil, "")); err != nil || got == nil {
		t.Fatalf("ok result with an empty command = %v, %v", got, err)
	}

	want := &protocol.Error{Code: 4301, Reason: "CONVERSATION_NOT_FOUND", Detail: "d", Temporary: true, Pids: []string{"x", "y"}}
	_, err = decodeCommandResult(commandResult(t, nil, want, ""))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != want.Code || pe.Reason != want.Reason || pe.Detail != want.Detail ||
		pe.Temporary != want.Temporary || !slices.Equal(pe.Pids, want.Pids) {
		t.Fatalf("protocol error result = %#v", err)
	}
	hook := &protocol.Error{Code: 4402, Reason: "MESSAGE_REJECTED_BY_APP", Detail: "no", AppCode: 42, AppMsg: "no"}
	if _, err := decodeCommandResult(commandResult(t, nil, hook, "")); !errors.As(err, &pe) || pe.AppCode != 42 || pe.AppMsg != "no" {
		t.Fatalf("hook rejection result = %#v", err)
	}
	if _, err := decodeCommandResult(commandResult(t, nil, &protocol.Error{Code: -1}, "")); !errors.As(err, &pe) || pe.Code != -1 {
		t.Fatalf("negative code = %#v", err)
	}

	_, err = decodeCommandResult(commandResult(t, nil, nil, "disk on fire"))
	if err == nil || err.Error() != "disk on fire" || errors.As(err, &pe) {
		t.Fatalf("failure result = %#v", err)
	}
}

func TestRouteWireCommandResultCorrupt(t *testing.T) {
	full := [][]byte{
		commandResult(t, nil, &protocol.Error{Code: 4301, Reason: "r", Pids: []string{"p"}}, ""),
		commandResult(t, nil, nil, "failure"),
	}
	for _, b := range full {
		// Prefix 0 is an empty payload; a strict prefix of these always
		// fails (a lone cmdOK byte is the valid empty result, so OK
		// results are not included here).
		for n := range len(b) {
			_, err := decodeCommandResult(b[:n])
			var pe *protocol.Error
			if err == nil || errors.As(err, &pe) {
				t.Fatalf("prefix %d/%d of %x: %v", n, len(b), b, err)
			}
		}
	}
	withBody := commandResult(t, &pb.GenericCommand{PeerId: proto.String("alice")}, nil, "")
	for n := 2; n < len(withBody); n++ {
		if got, err := decodeCommandResult(withBody[:n]); err == nil {
			t.Fatalf("prefix %d/%d of an ok result decoded as %v", n, len(withBody), got)
		}
	}
	// A body that is not a protobuf message.
	var e wire.Enc
	e.U64(cmdOK)
	e.Bytes([]byte{0xff, 0xff, 0xff})
	if got, err := decodeCommandResult(e.B); err == nil {
		t.Fatalf("garbage protobuf decoded as %v", got)
	}
}

func FuzzDecodeCommandResult(f *testing.F) {
	f.Add(commandResult(f, &pb.GenericCommand{PeerId: proto.String("p")}, nil, ""))
	f.Add(commandResult(f, nil, &protocol.Error{Code: 1, Reason: "r", Pids: []string{"x"}}, ""))
	f.Add(commandResult(f, nil, nil, "boom"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeCommandResult(b)
	})
}
