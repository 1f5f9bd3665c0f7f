package gateway

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// waitDone waits up to 10 s for ctx's Done channel.
func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not done within 10s", what)
	}
}

// TestRequestCtxAsWithDeadline: a request context reports its deadline,
// has no error before it and DeadlineExceeded after it whether or not its
// Done channel was asked for, closes Done at the deadline, cancels the
// contexts derived from it, follows its parent's cancellation, and is
// Canceled once released.
func TestRequestCtxAsWithDeadline(t *testing.T) {
	const d = 50 * time.Millisecond

	deadline := time.Now().Add(d)
	lazy := newRequestCtx(context.Background(), deadline)
	if got, ok := lazy.Deadline(); !ok || !got.Equal(deadline) {
		t.Fatalf("Deadline() = %v, %v; want %v, true", got, ok, deadline)
	}
	if err := lazy.Err(); err != nil {
		t.Fatalf("Err() before the deadline = %v", err)
	}
	timed := newRequestCtx(context.Background(), time.Now().Add(d))
	child, cancelChild := context.WithCancel(timed)
	defer cancelChild()
	waitDone(t, child, "derived context")
	waitDone(t, timed, "request context")
	// timed's deadline came after lazy's.
	for name, ctx := range map[string]context.Context{"without Done": lazy, "with Done": timed, "derived": child} {
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Err() after the deadline = %v, want DeadlineExceeded", name, err)
		}
	}
	lazy.release()
	timed.release()

	parent, cancelParent := context.WithCancel(context.Background())
	p := newRequestCtx(parent, time.Now().Add(time.Hour))
	cancelParent()
	if err := p.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err() after the parent's cancel = %v, want Canceled", err)
	}
	waitDone(t, p, "request context of a cancelled parent")

	for _, askDone := range []bool{false, true} {
		r := newRequestCtx(context.Background(), time.Now().Add(time.Hour))
		if askDone {
			_ = r.Done()
		}
		r.release()
		if err := r.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Done asked %v: Err() after release = %v, want Canceled", askDone, err)
		}
		waitDone(t, r, "released request context")
	}
}

// blockingEngine is the real engine except for the commands block picks:
// those wait for their context to end and fail with its error, as a command
// stuck on an unreachable replica would. It records the deadline they saw.
type blockingEngine struct {
	Engine
	block    func(*pb.GenericCommand) bool
	deadline atomic.Pointer[time.Time]
}

func (e *blockingEngine) Handle(ctx context.Context, c conversation.Caller, req *pb.GenericCommand) (*pb.GenericCommand, error) {
	if !e.block(req) {
		return e.Engine.Handle(ctx, c, req)
	}
	if d, ok := ctx.Deadline(); ok {
		e.deadline.Store(&d)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCommandRequestTimeout: a command that does not finish within the
// request timeout is answered with the retryable 4200 "request timed out",
// its context having carried the deadline, and the socket serves the next
// command.
func TestCommandRequestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	g, _, url := startGatewayWith(t, func(c *Config) { c.RequestTimeout = timeout })
	be := &blockingEngine{Engine: g.engine, block: func(r *pb.GenericCommand) bool {
		return r.GetCmd() == pb.CommandType_direct
	}}
	g.SetEngine(be)
	alice := dialTest(t, url, "alice")

	sent := time.Now()
	alice.send(&pb.GenericCommand{Cmd: pb.CommandType_direct.Enum(), I: proto.Int32(2),
		DirectMessage: &pb.DirectCommand{Cid: proto.String("c1"), Msg: proto.String("stuck")}})
	r := alice.next(func(r *pb.GenericCommand) bool { return r.GetI() == 2 })
	answered := time.Since(sent)
	em := r.GetErrorMessage()
	if r.GetCmd() != pb.CommandType_error || em.GetCode() != protocol.ErrUnavailable.Code || em.GetDetail() != "request timed out" {
		t.Fatalf("stuck command answered %v, want %d \"request timed out\"", r, protocol.ErrUnavailable.Code)
	}
	if answered < timeout {
		t.Errorf("answered after %v, before the %v request timeout", answered, timeout)
	}
	d := be.deadline.Load()
	// The deadline is the request timeout after the command was read,
	// which was after it was sent and before it was answered.
	if d == nil || d.Sub(sent) < timeout || d.Sub(sent) > answered {
		t.Errorf("command's deadline %v, want %v after its dispatch (sent %v, answered %v later)", d, timeout, sent, answered)
	}

	alice.send(&pb.GenericCommand{Cmd: pb.CommandType_conv.Enum(), Op: pb.OpType_start.Enum(), I: proto.Int32(3),
		ConvMessage: &pb.ConvCommand{M: []string{"bob"}}})
	if r := alice.next(func(r *pb.GenericCommand) bool { return r.GetI() == 3 }); r.GetConvMessage().GetCid() == "" {
		t.Fatalf("conv/start after the timeout answered %v", r)
	}
}

// BenchmarkRequestContext compares a command's request context with the
// context.WithTimeout it replaces, from every worker at once under one
// parent (the gateway's lifetime): the command reads its deadline and
// checks its error, as a local write does.
func BenchmarkRequestContext(b *testing.B) {
	parent := b.Context()
	b.Run("WithTimeout", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithTimeout(parent, 15*time.Second)
				_, _ = ctx.Deadline()
				_ = ctx.Err()
				cancel()
			}
		})
	})
	b.Run("requestCtx", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx := newRequestCtx(parent, time.Now().Add(15*time.Second))
				_, _ = ctx.Deadline()
				_ = ctx.Err()
				ctx.release()
			}
		})
	})
}
