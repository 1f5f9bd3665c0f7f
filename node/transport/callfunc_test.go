package transport

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// callFunc runs CallFunc and returns a channel with its outcome; it fails
// the test if done runs more than once (within the test's lifetime).
func callFunc(t *testing.T, tr *Transport, to string, payload []byte, timeout time.Duration) <-chan result {
	t.Helper()
	out := make(chan result, 2)
	var calls atomic.Int32
	tr.CallFunc(to, 1, payload, timeout, func(b []byte, err error) {
		if calls.Add(1) > 1 {
			t.Errorf("done ran twice (now with %v)", err)
		}
		out <- result{payload: b, err: err}
	})
	return out
}

func awaitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("done never ran")
		return result{}
	}
}

// TestTransportCallFunc: CallFunc hands the answer, a remote error, its
// own timeout and a failure before sending to done, once each, and a
// late answer after the timeout is dropped.
func TestTransportCallFunc(t *testing.T) {
	book := newAddrBook()
	release := make(chan struct{})
	a := startNode(t, book, "a", nil, nil)
	startNode(t, book, "b", HandlerFuncs{Request: func(ctx context.Context, req *Request) ([]byte, error) {
		switch string(req.Payload) {
		case "fail":
			return nil, errors.New("refused")
		case "hang":
			select {
			case <-release:
			case <-ctx.Done():
			}
			return []byte("late"), nil
		}
		return append([]byte("b:"), req.Payload...), nil
	}}, nil)

	if r := awaitResult(t, callFunc(t, a, "b", []byte("hi"), time.Second)); r.err != nil || string(r.payload) != "b:hi" {
		t.Fatalf("answer = %q, %v", r.payload, r.err)
	}
	r := awaitResult(t, callFunc(t, a, "b", []byte("fail"), time.Second))
	if re, ok := errors.AsType[*RemoteError](r.err); !ok || re.Message != "refused" {
		t.Fatalf("remote error = %v", r.err)
	}

	hung := callFunc(t, a, "b", []byte("hang"), 100*time.Millisecond)
	if r := awaitResult(t, hung); !errors.Is(r.err, ErrTimeout) || !IsRetryable(r.err) {
		t.Fatalf("hung call err = %v, want ErrTimeout", r.err)
	}
	close(release)
	// The connection still works, and the late answer reached no one.
	if r := awaitResult(t, callFunc(t, a, "b", []byte("again"), time.Second)); r.err != nil || string(r.payload) != "b:again" {
		t.Fatalf("after timeout: %q, %v", r.payload, r.err)
	}
	select {
	case r := <-hung:
		t.Fatalf("second outcome of the timed-out call: %q, %v", r.payload, r.err)
	default:
	}

	big := make([]byte, DefaultLocalConfig().MaxFrameSize)
	if r := awaitResult(t, callFunc(t, a, "b", big, time.Second)); !errors.Is(r.err, ErrFrameTooLarge) {
		t.Fatalf("too large: %v", r.err)
	}
	if r := awaitResult(t, callFunc(t, a, "unknown-node", nil, time.Second)); !IsRetryable(r.err) {
		t.Fatalf("unresolvable node: %v", r.err)
	}
}
