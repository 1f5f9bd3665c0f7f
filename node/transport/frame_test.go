package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func sampleFrames() []*frame {
	return []*frame{
		{typ: frameHello, version: protocolVersion, nodeID: "imnode-0"},
		{typ: frameHelloAck, status: statusOK, nodeID: "imnode-1"},
		{typ: frameHelloAck, status: statusRejected, nodeID: "imnode-1", payload: []byte("no")},
		{typ: frameRequest, id: 1<<63 + 5, epoch: 42, timeout: 20000, method: 3, payload: []byte("hello")},
		{typ: frameRequest, id: 1},
		{typ: frameResponse, id: 9, status: statusEpochMismatch, epoch: 43},
		{typ: frameResponse, id: 9, status: statusOK, payload: bytes.Repeat([]byte{0xab}, 300)},
		{typ: frameMessage, epoch: 7, method: 65535, payload: []byte{0}},
	}
}

func TestTransportFrameRoundTrip(t *testing.T) {
	var stream []byte
	for _, f := range sampleFrames() {
		stream = appendFrame(stream, f)
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	for i, want := range sampleFrames() {
		got, err := readFrame(r, 1<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := readFrame(r, 1<<20); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestTransportFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"too large", []byte{0, 1, 0, 0, frameRequest}, ErrFrameTooLarge},
		{"empty", []byte{0, 0, 0, 0}, ErrBadFrame},
		{"unknown type", []byte{0, 0, 0, 1, 200}, ErrBadFrame},
		{"short request", []byte{0, 0, 0, 3, frameRequest, 0, 0}, ErrBadFrame},
		{"short response", []byte{0, 0, 0, 2, frameResponse, 0}, ErrBadFrame},
		{"short message", []byte{0, 0, 0, 2, frameMessage, 0}, ErrBadFrame},
		{"hello id past end", []byte{0, 0, 0, 4, frameHello, 1, 9, 'a'}, ErrBadFrame},
		{"bad status", appendFrame(nil, &frame{typ: frameResponse, status: 77}), ErrBadFrame},
		{"truncated", []byte{0, 0, 0, 9, frameMessage, 1}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), 1024)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzDecodeFrame: any byte stream decodes to frames or an error, never a
// panic, and every decoded frame re-encodes to the bytes it came from.
func FuzzDecodeFrame(f *testing.F) {
	var stream []byte
	for _, fr := range sampleFrames() {
		b := appendFrame(nil, fr)
		f.Add(b)
		f.Add(b[:len(b)/2])
		stream = append(stream, b...)
	}
	f.Add(stream)
	f.Add(stream[3:])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		off := 0
		for {
			fr, err := readFrame(r, 1<<16)
			if err != nil {
				return
			}
			n := 4 + int(uint32(data[off])<<24|uint32(data[off+1])<<16|uint32(data[off+2])<<8|uint32(data[off+3]))
			orig := data[off : off+n]
			off += n
			if enc := appendFrame(nil, fr); !bytes.Equal(enc, orig) {
				t.Fatalf("re-encoding %+v = %x, want %x", fr, enc, orig)
			}
		}
	})
}
