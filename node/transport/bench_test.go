package transport

import (
	"context"
	"fmt"
	"testing"

	"github.com/imcluster/imcluster/test/harness"
)

// BenchmarkTransportCall measures request/response round trips over one
// multiplexed loopback connection, sequential and with parallel callers.
func BenchmarkTransportCall(b *testing.B) {
	for _, size := range []int{64, 4096} {
		book := newAddrBook()
		a := startNode(b, book, "a", nil, func(c *Config) { c.Logger = discardLogger() })
		peer := startNode(b, book, "b", HandlerFuncs{Request: func(_ context.Context, req *Request) ([]byte, error) {
			return req.Payload, nil
		}}, func(c *Config) { c.Logger = discardLogger() })
		payload := make([]byte, size)
		if _, err := a.Call(context.Background(), "b", 1, payload); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("seq/%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := a.Call(context.Background(), "b", 1, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("parallel/%dB", size), func(b *testing.B) {
			defer reportBatching(b, a, peer)()
			b.SetBytes(int64(size))
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := a.Call(context.Background(), "b", 1, payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// reportBatching reports, when the returned function runs, the frames
// the transports wrote per flush (one write system call each) and the
// process's CPU time per operation, both over the benchmark's run.
func reportBatching(b *testing.B, ts ...*Transport) func() {
	frames := func() (n, flushes uint64) {
		for _, t := range ts {
			st := t.Stats()
			n, flushes = n+st.FramesWritten, flushes+st.Flushes
		}
		return n, flushes
	}
	n0, f0 := frames()
	c0 := harness.ProcessCPU(b)
	return func() {
		n, f := frames()
		if f > f0 {
			b.ReportMetric(float64(n-n0)/float64(f-f0), "frames/flush")
		}
		b.ReportMetric(float64(harness.ProcessCPU(b)-c0)/float64(b.N), "cpu-ns/op")
	}
}

// deepHandler answers after using about 16 KiB of stack, as a handler
// that reads Pebble does: a goroutine per request grows its stack on every
// request, a reused worker rarely.
func deepHandler(_ context.Context, req *Request) ([]byte, error) {
	var use func(n int) byte
	use = func(n int) byte {
		var frame [512]byte
		frame[n%512] = byte(n)
		if n == 0 {
			return frame[0]
		}
		return use(n-1) + frame[n%512]
	}
	return append(req.Payload[:0:0], use(32)), nil
}

// BenchmarkTransportCallDeepHandler measures round trips to a handler with
// a deep stack, with parallel callers (the replicas' Prepare, the router's
// forwarded commands).
func BenchmarkTransportCallDeepHandler(b *testing.B) {
	book := newAddrBook()
	a := startNode(b, book, "a", nil, func(c *Config) { c.Logger = discardLogger() })
	peer := startNode(b, book, "b", HandlerFuncs{Request: deepHandler}, func(c *Config) { c.Logger = discardLogger() })
	if _, err := a.Call(context.Background(), "b", 1, nil); err != nil {
		b.Fatal(err)
	}
	defer reportBatching(b, a, peer)()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Call(context.Background(), "b", 1, []byte("x")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTransportSend measures one-way messages (pushes) until the
// receiver has them all.
func BenchmarkTransportSend(b *testing.B) {
	book := newAddrBook()
	got := make(chan struct{}, 1<<16)
	a := startNode(b, book, "a", nil, func(c *Config) { c.Logger = discardLogger(); c.SendQueueLen = 1 << 14 })
	startNode(b, book, "b", HandlerFuncs{Message: func(*Message) { got <- struct{}{} }}, func(c *Config) { c.Logger = discardLogger() })
	payload := make([]byte, 256)
	b.SetBytes(256)
	for b.Loop() {
		for a.Send("b", 1, payload) != nil {
			<-got // queue full: let the receiver catch up
		}
		select {
		case <-got:
		default:
		}
	}
}

func BenchmarkTransportDecodeFrame(b *testing.B) {
	f := frame{typ: frameRequest, id: 1, epoch: 2, timeout: 3, method: 4, payload: make([]byte, 256)}
	enc := appendFrame(nil, &f)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeFrame(enc[lenPrefix:]); err != nil {
			b.Fatal(err)
		}
	}
}
