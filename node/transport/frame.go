package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// protocolVersion is sent in Hello; a listener rejects other versions.
// Version 2 added framePing and the idle timeout.
const protocolVersion = 2

// Frame types. The values are a wire contract between node versions.
const (
	frameHello    byte = 1 // dialer -> listener: version, node id
	frameHelloAck byte = 2 // listener -> dialer: status, node id, reason
	frameRequest  byte = 3 // id, epoch, timeout ms, method, payload
	frameResponse byte = 4 // id, status, epoch, payload (or error text)
	frameMessage  byte = 5 // epoch, method, payload; no response
	framePing     byte = 6 // dialer -> listener while idle; no body, no answer
)

// Status of a Response or HelloAck.
const (
	statusOK            byte = 0
	statusError         byte = 1 // handler error, not retryable
	statusRetry         byte = 2 // handler error, retryable
	statusEpochMismatch byte = 3 // epoch field holds the receiver's epoch
	statusShutdown      byte = 4 // receiver is shutting down
	statusRejected      byte = 5 // handshake refused (version, partition)
	lastStatus               = statusRejected
)

// Header sizes after the 4-byte length.
const (
	lenPrefix      = 4
	requestHeader  = 1 + 8 + 8 + 4 + 2 // type id epoch timeout method
	responseHeader = 1 + 8 + 1 + 8     // type id status epoch
	messageHeader  = 1 + 8 + 2         // type epoch method
	maxNodeIDLen   = 255
)

// Errors from decoding; a connection that produces one is closed.
var (
	ErrFrameTooLarge = errors.New("transport: frame too large")
	ErrBadFrame      = errors.New("transport: malformed frame")
)

// frame is a decoded frame. Payload aliases the buffer it was read into,
// which readFrame allocates per frame, so the receiver owns it.
type frame struct {
	typ     byte
	id      uint64
	epoch   uint64
	timeout uint32 // milliseconds; 0 means none
	method  uint16
	status  byte
	version byte
	nodeID  string
	payload []byte
}

// appendFrame appends the encoding of f to b.
func appendFrame(b []byte, f *frame) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, f.typ)
	switch f.typ {
	case frameHello:
		b = append(b, f.version, byte(len(f.nodeID)))
		b = append(b, f.nodeID...)
	case frameHelloAck:
		b = append(b, f.status, byte(len(f.nodeID)))
		b = append(b, f.nodeID...)
	case frameRequest:
		b = binary.BigEndian.AppendUint64(b, f.id)
		b = binary.BigEndian.AppendUint64(b, f.epoch)
		b = binary.BigEndian.AppendUint32(b, f.timeout)
		b = binary.BigEndian.AppendUint16(b, f.method)
	case frameResponse:
		b = binary.BigEndian.AppendUint64(b, f.id)
		b = append(b, f.status)
		b = binary.BigEndian.AppendUint64(b, f.epoch)
	case frameMessage:
		b = binary.BigEndian.AppendUint64(b, f.epoch)
		b = binary.BigEndian.AppendUint16(b, f.method)
	}
	b = append(b, f.payload...)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-lenPrefix))
	return b
}

// readFrame reads one frame. Frames longer than maxSize (after the length
// prefix) are rejected before any allocation.
func readFrame(r *bufio.Reader, maxSize int) (*frame, error) {
	var hdr [lenPrefix]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrBadFrame)
	}
	if uint64(n) > uint64(maxSize) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxSize)
	}
	body, err := readBody(r, int(n))
	if err != nil {
		return nil, err
	}
	return decodeFrame(body)
}

// initialFrameAlloc is what readBody allocates before any body byte
// arrived: a length prefix is only a claim, so a peer announcing a 4 MiB
// frame and sending nothing costs 64 KiB, not 4 MiB.
const initialFrameAlloc = 64 << 10

// readBody reads an n-byte frame body, growing the buffer (doubling, at
// most to n) only as bytes arrive, so memory follows what the peer sent.
func readBody(r io.Reader, n int) ([]byte, error) {
	body := make([]byte, min(n, initialFrameAlloc))
	read := 0
	for {
		m, err := io.ReadFull(r, body[read:])
		read += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if read == n {
			return body, nil
		}
		body = append(body, make([]byte, min(n, 2*len(body))-len(body))...)
	}
}

// decodeFrame decodes a frame body (type byte onward). It never panics.
func decodeFrame(body []byte) (*frame, error) {
	f := &frame{typ: body[0]}
	b := body[1:]
	need := func(n int) error {
		if len(b) < n {
			return fmt.Errorf("%w: type %d needs %d header bytes, has %d", ErrBadFrame, f.typ, n, len(b))
		}
		return nil
	}
	switch f.typ {
	case frameHello, frameHelloAck:
		if err := need(2); err != nil {
			return nil, err
		}
		if f.typ == frameHello {
			f.version = b[0]
		} else {
			f.status = b[0]
		}
		idLen := int(b[1])
		b = b[2:]
		if err := need(idLen); err != nil {
			return nil, err
		}
		f.nodeID, b = string(b[:idLen]), b[idLen:]
	case frameRequest:
		if err := need(requestHeader - 1); err != nil {
			return nil, err
		}
		f.id = binary.BigEndian.Uint64(b)
		f.epoch = binary.BigEndian.Uint64(b[8:])
		f.timeout = binary.BigEndian.Uint32(b[16:])
		f.method = binary.BigEndian.Uint16(b[20:])
		b = b[requestHeader-1:]
	case frameResponse:
		if err := need(responseHeader - 1); err != nil {
			return nil, err
		}
		f.id = binary.BigEndian.Uint64(b)
		f.status = b[8]
		f.epoch = binary.BigEndian.Uint64(b[9:])
		b = b[responseHeader-1:]
	case framePing:
	case frameMessage:
		if err := need(messageHeader - 1); err != nil {
			return nil, err
		}
		f.epoch = binary.BigEndian.Uint64(b)
		f.method = binary.BigEndian.Uint16(b[8:])
		b = b[messageHeader-1:]
	default:
		return nil, fmt.Errorf("%w: unknown type %d", ErrBadFrame, f.typ)
	}
	if f.status > lastStatus {
		return nil, fmt.Errorf("%w: unknown status %d", ErrBadFrame, f.status)
	}
	if len(b) > 0 {
		f.payload = b
	}
	return f, nil
}
