package gateway

import (
	"context"
	"sync/atomic"
	"time"
)

// requestCtx is one command's context: the gateway's lifetime (parent)
// bounded by the request deadline, like context.WithDeadline, but it
// starts no timer and joins no list of the parent's children until
// something asks for its Done channel. Most commands never do (a local
// write waits for its sync, not for the context), and a command paying a
// timer and the parent's mutex each would make every worker of the node
// contend on that one mutex. Err needs no channel: it is the parent's
// error, else DeadlineExceeded once the deadline passed.
//
// Done, and everything derived from the context (context.WithCancel and
// the like call Done first), switches it to a context.WithDeadline of the
// same parent and deadline, so from then on it behaves exactly as one.
// release (the command's end) is a WithDeadline's cancel: the context is
// Canceled from then on, whether or not its Done was made.
// context.Cause of one whose Done was never asked for is its parent's
// cause (nil until the gateway shuts down): nothing on the command path
// asks for a cause, only for Err.
type requestCtx struct {
	parent   context.Context //nolint:containedctx // it is a context: the one it derives from
	deadline time.Time
	// inner is the WithDeadline made at the first Done; nil before.
	inner atomic.Pointer[deadlineCtx]
	// released is set by release.
	released atomic.Bool
}

type deadlineCtx struct {
	ctx    context.Context //nolint:containedctx // the WithDeadline requestCtx switches to
	cancel context.CancelFunc
}

func newRequestCtx(parent context.Context, deadline time.Time) *requestCtx {
	return &requestCtx{parent: parent, deadline: deadline}
}

// Deadline implements context.Context.
func (c *requestCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context.
func (c *requestCtx) Done() <-chan struct{} { return c.timed().Done() }

// Err implements context.Context.
func (c *requestCtx) Err() error {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if c.released.Load() {
		return context.Canceled
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. Once Done was asked for, values come
// from the WithDeadline, so that contexts derived from this one find its
// cancellation as they would a WithDeadline's (no goroutine to watch it).
func (c *requestCtx) Value(key any) any {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// timed returns the WithDeadline, made at the first call.
func (c *requestCtx) timed() context.Context {
	if in := c.inner.Load(); in != nil {
		return in.ctx
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if !c.inner.CompareAndSwap(nil, &deadlineCtx{ctx: ctx, cancel: cancel}) {
		cancel()
		return c.inner.Load().ctx
	}
	// A release that ran before the swap saw no WithDeadline to cancel.
	if c.released.Load() {
		cancel()
	}
	return ctx
}

// release ends the request: it stops the WithDeadline's timer, if one was
// made, and cancels what was derived from it.
func (c *requestCtx) release() {
	c.released.Store(true)
	if in := c.inner.Load(); in != nil {
		in.cancel()
	}
}

// String names the context in panics and logs, as the standard library's
// contexts do.
func (c *requestCtx) String() string { return "gateway.requestCtx" }
