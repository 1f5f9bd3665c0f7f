package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/test/harness"
)

func TestTransportCallAndMessages(t *testing.T) {
	book := newAddrBook()
	var (
		mu   sync.Mutex
		msgs []string
	)
	h := HandlerFuncs{
		Request: echo("b").HandleRequest,
		Message: func(m *Message) {
			mu.Lock()
			defer mu.Unlock()
			msgs = append(msgs, fmt.Sprintf("%s/%d/%s", m.From, m.Method, m.Payload))
		},
	}
	a := startNode(t, book, "a", echo("a"), nil)
	startNode(t, book, "b", h, nil)

	// Many concurrent calls share one connection.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			want := fmt.Sprintf("b:req-%d", i)
			got, err := a.Call(context.Background(), "b", 7, fmt.Appendf(nil, "req-%d", i))
			if err != nil || string(got) != want {
				errs <- fmt.Errorf("call %d = %q, %v; want %q", i, got, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 50 {
		if err := a.Send("b", 9, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(msgs) < 50 {
			return fmt.Errorf("%d of 50 messages", len(msgs))
		}
		return nil
	})
	for i, m := range msgs {
		if want := fmt.Sprintf("a/9/m%d", i); m != want {
			t.Fatalf("message %d = %q, want %q (order)", i, m, want)
		}
	}
	if st := a.Stats(); st.Dials != 1 {
		t.Fatalf("dials = %d, want one multiplexed connection", st.Dials)
	}
}

func TestTransportEpochMismatch(t *testing.T) {
	book := newAddrBook()
	var epochB atomic.Uint64
	epochB.Store(5)
	a := startNode(t, book, "a", nil, func(c *Config) { c.Epoch = func() uint64 { return 4 } })
	b := startNode(t, book, "b", echo("b"), func(c *Config) {
		c.Epoch = epochB.Load
		c.SkipEpochCheck = func(method uint16) bool { return method == 2 }
	})
	_, err := a.Call(context.Background(), "b", 1, nil)
	var em *EpochMismatchError
	if !errors.As(err, &em) || em.Sent != 4 || em.Remote != 5 || em.Peer != "b" {
		t.Fatalf("err = %#v, want epoch mismatch 4 vs 5", err)
	}
	if !errors.Is(err, ErrEpochMismatch) || !IsRetryable(err) {
		t.Fatal("epoch mismatch is not ErrEpochMismatch or not retryable")
	}
	if got, err := a.Call(context.Background(), "b", 2, []byte("y")); err != nil || string(got) != "b:y" {
		t.Fatalf("exempt method: %q, %v", got, err)
	}
	if b.Stats().EpochRejects != 1 {
		t.Fatalf("epoch rejects = %d", b.Stats().EpochRejects)
	}
	epochB.Store(4)
	if got, err := a.Call(context.Background(), "b", 1, []byte("x")); err != nil || string(got) != "b:x" {
		t.Fatalf("after convergence: %q, %v", got, err)
	}
}

func TestTransportHandlerErrors(t *testing.T) {
	book := newAddrBook()
	h := HandlerFuncs{Request: func(_ context.Context, req *Request) ([]byte, error) {
		switch req.Method {
		case 1:
			return nil, errors.New("no such conversation")
		case 2:
			return nil, Retry(errors.New("not coordinator yet"))
		}
		return nil, nil
	}}
	a := startNode(t, book, "a", nil, nil)
	startNode(t, book, "b", h, nil)
	startNode(t, book, "c", nil, nil)
	tests := []struct {
		name      string
		to        string
		method    uint16
		wantMsg   string
		retryable bool
	}{
		{"permanent", "b", 1, "no such conversation", false},
		{"retryable", "b", 2, "not coordinator yet", true},
		{"no handler", "c", 1, errNoHandler.Error(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Call(context.Background(), tt.to, tt.method, nil)
			var re *RemoteError
			if !errors.As(err, &re) || re.Message != tt.wantMsg || IsRetryable(err) != tt.retryable {
				t.Fatalf("err = %v, want %q retryable=%v", err, tt.wantMsg, tt.retryable)
			}
		})
	}
	if got, err := a.Call(context.Background(), "b", 3, nil); err != nil || got != nil {
		t.Fatalf("empty response = %q, %v", got, err)
	}
}

func TestTransportDeadlinePropagates(t *testing.T) {
	book := newAddrBook()
	handlerDone := make(chan error, 1)
	h := HandlerFuncs{Request: func(ctx context.Context, _ *Request) ([]byte, error) {
		<-ctx.Done()
		handlerDone <- ctx.Err()
		return nil, ctx.Err()
	}}
	a := startNode(t, book, "a", nil, nil)
	startNode(t, book, "b", h, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Call(ctx, "b", 1, nil)
	if !errors.Is(err, ErrTimeout) || !IsRetryable(err) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("call took %v", d)
	}
	select {
	case err := <-handlerDone:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler ctx err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was not cancelled by the carried deadline")
	}
}

func TestTransportUnreachablePeerFailsFast(t *testing.T) {
	book := newAddrBook()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	book.set("gone", ln.Addr().String())
	_ = ln.Close() // nothing listens there now
	a := startNode(t, book, "a", nil, nil)
	// The first call may wait for the first dial; after it the peer is in
	// backoff and calls fail at once.
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		start := time.Now()
		_, err := a.Call(context.Background(), "gone", 1, nil)
		if !errors.Is(err, ErrUnavailable) || !IsRetryable(err) {
			return fmt.Errorf("err = %v", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			return fmt.Errorf("took %v", d)
		}
		return nil
	})
	if err := a.Send("gone", 1, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Send err = %v", err)
	}
	if _, err := a.Call(context.Background(), "unknown-node", 1, nil); !IsRetryable(err) {
		t.Fatalf("unresolvable node: %v", err)
	}
}

func TestTransportReconnect(t *testing.T) {
	book := newAddrBook()
	a := startNode(t, book, "a", nil, nil)
	b1, err := New(func() Config {
		c := DefaultLocalConfig()
		c.NodeID, c.Handler, c.Logger = "b", echo("b1"), testLogger(t)
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Start(); err != nil {
		t.Fatal(err)
	}
	book.set("b", b1.Addr().String())
	if got, err := a.Call(context.Background(), "b", 1, nil); err != nil || string(got) != "b1:" {
		t.Fatalf("first call: %q, %v", got, err)
	}
	b1.Shutdown()
	// Calls fail with a retryable error while b is down.
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		_, err := a.Call(context.Background(), "b", 1, nil)
		if err == nil || !IsRetryable(err) {
			return fmt.Errorf("err = %v, want retryable failure", err)
		}
		return nil
	})
	// b comes back (on a new port, as a restarted pod might).
	startNode(t, book, "b", echo("b2"), nil)
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		got, err := a.Call(context.Background(), "b", 1, nil)
		if err != nil || string(got) != "b2:" {
			return fmt.Errorf("%q, %v", got, err)
		}
		return nil
	})
	if st := a.Stats(); st.Dials < 2 {
		t.Fatalf("dials = %d", st.Dials)
	}
}

func TestTransportWrongPeer(t *testing.T) {
	book := newAddrBook()
	a := startNode(t, book, "a", nil, nil)
	b := startNode(t, book, "b", echo("b"), nil)
	book.set("c", b.Addr().String()) // stale address now used by b
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		_, err := a.Call(context.Background(), "c", 1, nil)
		if !errors.Is(err, ErrWrongPeer) {
			return fmt.Errorf("err = %v", err)
		}
		return nil
	})
}

// stalledPeer accepts connections, completes the handshake as id and then
// never reads again: a peer that stopped reading.
func stalledPeer(tb testing.TB, id string) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if _, err := readFrame(bufio.NewReader(c), frameHelloMax); err != nil {
				continue
			}
			ack := frame{typ: frameHelloAck, nodeID: id}
			_, _ = c.Write(appendFrame(nil, &ack))
		}
	})
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

func TestTransportStoppedPeerBoundsMemory(t *testing.T) {
	book := newAddrBook()
	ln := stalledPeer(t, "stuck")
	book.set("stuck", ln.Addr().String())
	a := startNode(t, book, "a", nil, func(c *Config) {
		c.SendQueueLen = 16
		c.WriteTimeout = 300 * time.Millisecond
		c.BackoffMin = time.Second // keep it down long enough to observe
		c.BackoffMax = time.Second
	})
	// A call that will never be answered, to see it fail when the writer
	// gives up.
	callErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := a.Call(ctx, "stuck", 1, nil)
		callErr <- err
	}()
	// Big messages fill the socket buffers, then the bounded queue.
	payload := make([]byte, 256<<10)
	var full int
	harness.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		err := a.Send("stuck", 2, payload)
		if errors.Is(err, ErrQueueFull) {
			full++
		}
		if full < 3 {
			return fmt.Errorf("queue not full yet (last err %v)", err)
		}
		return nil
	})
	if !IsRetryable(fmt.Errorf("x: %w", ErrQueueFull)) {
		t.Fatal("ErrQueueFull not retryable")
	}
	// The write deadline drops the connection: the pending call fails and
	// the queue is emptied (memory released), calls now fail fast.
	select {
	case err := <-callErr:
		if !errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("pending call err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call not failed after the write timeout")
	}
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if err := a.Send("stuck", 2, nil); !errors.Is(err, ErrUnavailable) {
			return fmt.Errorf("send err = %v", err)
		}
		return nil
	})
	if st := a.Stats(); st.QueueFull == 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTransportInflightBackpressure(t *testing.T) {
	book := newAddrBook()
	var running, maxRunning atomic.Int32
	release := make(chan struct{})
	h := HandlerFuncs{Request: func(ctx context.Context, _ *Request) ([]byte, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}}
	a := startNode(t, book, "a", nil, nil)
	startNode(t, book, "b", h, func(c *Config) { c.MaxInflight = 2 })
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 10 {
		wg.Go(func() {
			if _, err := a.Call(context.Background(), "b", 1, nil); err != nil {
				failed.Add(1)
			}
		})
	}
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if running.Load() != 2 {
			return fmt.Errorf("%d running", running.Load())
		}
		return nil
	})
	close(release)
	wg.Wait()
	if maxRunning.Load() != 2 || failed.Load() != 0 {
		t.Fatalf("max concurrent handlers %d (want 2), failed calls %d", maxRunning.Load(), failed.Load())
	}
}

func TestTransportGarbageIsRejected(t *testing.T) {
	book := newAddrBook()
	a := startNode(t, book, "a", echo("a"), nil)
	b := startNode(t, book, "b", nil, nil)
	inputs := map[string][]byte{
		"text":                 []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"huge length":          {0xff, 0xff, 0xff, 0xff, 1},
		"zero length":          {0, 0, 0, 0},
		"bad type":             {0, 0, 0, 1, 99},
		"short hello":          {0, 0, 0, 2, frameHello, 1},
		"request before hello": appendFrame(nil, &frame{typ: frameRequest, id: 1}),
		"garbage after hello": append(appendFrame(nil, &frame{typ: frameHello, version: protocolVersion, nodeID: "evil"}),
			0, 0, 0, 3, frameResponse, 1, 2),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			before := a.Stats().BadFrames
			c, err := net.Dial("tcp", a.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			if _, err := c.Write(in); err != nil {
				t.Fatal(err)
			}
			// The node closes the connection (reads hit EOF after an
			// optional hello ack).
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1024)
			for {
				if _, err := c.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("connection not closed after garbage")
					}
					break
				}
			}
			harness.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if a.Stats().BadFrames == before {
					return errors.New("malformed frame not counted")
				}
				return nil
			})
		})
	}
	// The node still serves well-behaved peers.
	if got, err := b.Call(context.Background(), "a", 1, []byte("ok")); err != nil || string(got) != "a:ok" {
		t.Fatalf("after garbage: %q, %v", got, err)
	}
}

func TestTransportFaults(t *testing.T) {
	book := newAddrBook()
	faults := NewFaults(1)
	a := startNode(t, book, "a", nil, func(c *Config) { c.Faults = faults })
	startNode(t, book, "b", echo("b"), nil)
	call := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := a.Call(ctx, "b", 1, nil)
		return err
	}
	if err := call(time.Second); err != nil {
		t.Fatal(err)
	}

	faults.SetDelay(150 * time.Millisecond)
	start := time.Now()
	if err := call(5 * time.Second); err != nil || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("delayed call: %v after %v", err, time.Since(start))
	}
	faults.Heal()

	faults.SetDropRate(1)
	if err := call(100 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("dropped call err = %v", err)
	}
	faults.Heal()

	faults.Partition("b")
	if err := call(100 * time.Millisecond); !IsRetryable(err) {
		t.Fatalf("partitioned call err = %v", err)
	}
	faults.Heal()
	harness.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error { return call(time.Second) })
}

func TestTransportShutdown(t *testing.T) {
	book := newAddrBook()
	block := make(chan struct{})
	defer close(block)
	a := startNode(t, book, "a", nil, nil)
	startNode(t, book, "b", HandlerFuncs{Request: func(ctx context.Context, _ *Request) ([]byte, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	}}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), "b", 1, nil)
		errc <- err
	}()
	// A CallFunc pending at the shutdown is completed too, not left
	// waiting for its timeout.
	pending := callFunc(t, a, "b", nil, time.Minute)
	harness.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if a.Stats().Dials == 0 {
			return errors.New("not connected")
		}
		return nil
	})
	a.Shutdown()
	if err := <-errc; !errors.Is(err, ErrShutdown) && !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("pending call err = %v", err)
	}
	if r := awaitResult(t, pending); !errors.Is(r.err, ErrShutdown) && !errors.Is(r.err, ErrConnectionLost) {
		t.Fatalf("pending CallFunc err = %v", r.err)
	}
	if _, err := a.Call(context.Background(), "b", 1, nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("call after shutdown: %v", err)
	}
	if r := awaitResult(t, callFunc(t, a, "b", nil, time.Second)); !errors.Is(r.err, ErrShutdown) {
		t.Fatalf("CallFunc after shutdown: %v", r.err)
	}
	a.Shutdown() // idempotent
}

func TestTransportConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"local", func(*Config) {}, true},
		{"no id", func(c *Config) { c.NodeID = "" }, false},
		{"long id", func(c *Config) { c.NodeID = string(make([]byte, 256)) }, false},
		{"tiny frames", func(c *Config) { c.MaxFrameSize = 3 }, false},
		{"backoff inverted", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }, false},
		{"negative timeout", func(c *Config) { c.WriteTimeout = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultLocalConfig()
			c.NodeID = "n"
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

func TestTransportPayloadTooLarge(t *testing.T) {
	book := newAddrBook()
	a := startNode(t, book, "a", nil, func(c *Config) { c.MaxFrameSize = 1024 })
	startNode(t, book, "b", echo("b"), nil)
	if _, err := a.Call(context.Background(), "b", 1, make([]byte, 2048)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if err := a.Send("b", 1, make([]byte, 2048)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// TestTransportSustainedStream: a stream that keeps the send queue busy for
// several WriteTimeouts must not trip the write deadline while the peer
// reads (each flush gets a fresh deadline).
func TestTransportSustainedStream(t *testing.T) {
	book := newAddrBook()
	var got atomic.Int64
	// 300 ms: several flushes per stream, yet above the reader stalls of a
	// loaded 2-core machine (100 ms tripped there while the peer read).
	const writeTimeout = 300 * time.Millisecond
	a := startNode(t, book, "a", nil, func(c *Config) { c.WriteTimeout = writeTimeout })
	startNode(t, book, "b", HandlerFuncs{Message: func(*Message) { got.Add(1) }}, nil)
	payload := make([]byte, 1024)
	sent := int64(0)
	for start := time.Now(); time.Since(start) < 5*writeTimeout; {
		err := a.Send("b", 1, payload)
		switch {
		case err == nil:
			sent++
		case errors.Is(err, ErrQueueFull):
		default:
			t.Fatalf("send: %v", err)
		}
	}
	harness.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got.Load() != sent {
			return fmt.Errorf("received %d of %d", got.Load(), sent)
		}
		return nil
	})
	if st := a.Stats(); st.Dials != 1 || st.DialErrors != 0 {
		t.Fatalf("connection was replaced during the stream: %+v", st)
	}
}
