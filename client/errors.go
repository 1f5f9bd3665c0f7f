package client

import (
	"errors"
	"fmt"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Error is a failure reported by the server: an `error` frame, a rejected
// `ack`, a failedPids entry or a session/closed push. Code and Reason are the
// protocol's stable numeric code and symbolic name (LEANCLOUD-RTM.md 3.15).
// Use errors.As to read it; errors.Is matches another *Error or a
// *protocol.Error with the same code:
//
//	errors.Is(err, protocol.ErrConversationNotFound)
type Error struct {
	Code    int32
	Reason  string
	Detail  string
	AppCode int32
	AppMsg  string
	// Pids lists the client ids a partial failure (failedPids) applies to.
	Pids []string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("client: server error %d %s: %s", e.Code, e.Reason, e.Detail)
	}
	return fmt.Sprintf("client: server error %d %s", e.Code, e.Reason)
}

// Is reports whether target is an *Error or *protocol.Error with e's code.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == e.Code
	case *protocol.Error:
		return t.Code == e.Code
	}
	return false
}

// Sentinel errors of the client itself (never sent by the server).
var (
	// ErrClosed is returned by every call on a closed Conn or IMClient.
	ErrClosed = errors.New("client: closed")
	// ErrNotConnected is returned when a request is made while the socket is
	// down (between a disconnect and a successful reconnect); the JS SDK says
	// "Connection unavailable".
	ErrNotConnected = errors.New("client: not connected")
	// ErrConnectionLost fails the requests that were in flight when the socket
	// dropped; they may or may not have been executed by the server.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrNotFound is returned by GetConversation for an unknown (or expired
	// temporary) conversation.
	ErrNotFound = errors.New("client: conversation not found")
	// ErrUnexpectedResponse means the server answered with a frame of the
	// wrong kind.
	ErrUnexpectedResponse = errors.New("client: unexpected response")
)

func errorFromProto(ec *pb.ErrorCommand) *Error {
	if ec == nil {
		return &Error{Code: protocol.ErrInternal.Code, Reason: protocol.ErrInternal.Reason, Detail: "error frame without errorMessage"}
	}
	return &Error{
		Code:    ec.GetCode(),
		Reason:  ec.GetReason(),
		Detail:  ec.GetDetail(),
		AppCode: ec.GetAppCode(),
		AppMsg:  ec.GetAppMsg(),
		Pids:    ec.GetPids(),
	}
}

func errorsFromProto(list []*pb.ErrorCommand) []*Error {
	if len(list) == 0 {
		return nil
	}
	out := make([]*Error, 0, len(list))
	for _, ec := range list {
		out = append(out, errorFromProto(ec))
	}
	return out
}

// isCode reports whether err is a server *Error with the given code.
func isCode(err error, code int32) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
