package run

import (
	"sync"
	"time"
)

// Pool runs short functions on a bounded set of warm worker goroutines, so
// that work arriving in bursts (a socket's commands) does not start a fresh
// goroutine each time and grow its stack again through the same deep calls:
// a worker that finished a function waits for the next one, with the stack
// that function grew.
//
// At most Max workers are kept. Go hands its function to an idle worker
// (the one that finished last, whose stack is the likeliest to be warm), or
// starts a worker while fewer than Max exist; when all Max are busy the
// function gets a goroutine of its own that ends with it, as without a
// pool, so Go never blocks and never waits for another function to finish
// (a function may wait for the network or a disk, and one function's
// progress may depend on another's). A worker idle for Idle exits; an idle
// pool has no goroutine at all (the reaper that retires idle workers runs
// only while workers exist).
//
// The pool owns every goroutine it starts; Close makes the idle workers
// exit and the busy ones exit after their function, and Wait waits for
// all of them.
type Pool struct {
	max  int
	idle time.Duration

	// mu guards the fields below; it is a leaf, held only to take or put
	// an idle worker and to start a goroutine.
	mu sync.Mutex
	// ready are the idle workers, the one idle longest first.
	ready   []*poolWorker
	workers int  // warm workers running (idle or busy)
	reaping bool // the reaper runs
	closed  bool
	stop    chan struct{} // closed by Close: the reaper exits

	wg sync.WaitGroup
}

// Task is what a pool runs. A pointer type whose Run method does the work
// (Pool.Run) costs no allocation to hand over, where a method value given
// to Go allocates its closure each time.
type Task interface{ Run() }

// funcTask runs a function as a Task.
type funcTask func()

func (f funcTask) Run() { f() }

// poolWorker is an idle worker's mailbox: the next task (nil: exit).
type poolWorker struct {
	next  chan Task // capacity 1: handing over never blocks
	since time.Time // when it became idle
}

// NewPool returns a pool that keeps at most max warm workers (at least
// one), each for at most idle (at least a millisecond) without work.
func NewPool(maxWorkers int, idle time.Duration) *Pool {
	return &Pool{max: max(maxWorkers, 1), idle: max(idle, time.Millisecond), stop: make(chan struct{})}
}

// Go runs f on a goroutine of the pool, as Run.
func (p *Pool) Go(f func()) { p.Run(funcTask(f)) }

// Run runs t on a goroutine of the pool: an idle warm worker, a new warm
// worker while fewer than the pool's bound exist, or, when all are busy or
// the pool is closed, a goroutine of its own. It never blocks and never runs
// t on the caller's goroutine, so it may be called under the caller's
// locks. It must not be called once Wait has returned.
func (p *Pool) Run(t Task) {
	p.mu.Lock()
	if !p.closed {
		if n := len(p.ready); n > 0 {
			w := p.ready[n-1]
			p.ready[n-1] = nil
			p.ready = p.ready[:n-1]
			p.mu.Unlock()
			w.next <- t
			return
		}
		if p.workers < p.max {
			p.workers++
			if !p.reaping {
				p.reaping = true
				p.wg.Add(1)
				go p.reap()
			}
			p.wg.Add(1)
			p.mu.Unlock()
			go p.work(t)
			return
		}
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		t.Run()
	}()
}

// work is a warm worker: it runs t, then the tasks Run hands it, until
// the reaper or Close retires it.
func (p *Pool) work(t Task) {
	defer p.wg.Done()
	w := &poolWorker{next: make(chan Task, 1)}
	for t != nil {
		t.Run()
		if !p.park(w) {
			return
		}
		t = <-w.next
	}
}

// park puts w among the idle workers; false (the pool is closed) means w
// exits instead.
func (p *Pool) park(w *poolWorker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.workers--
		return false
	}
	w.since = time.Now()
	p.ready = append(p.ready, w)
	return true
}

// reap retires the workers idle for longer than the pool's idle time,
// checking every half of it, and exits when no worker is left or the pool
// is closed.
func (p *Pool) reap() {
	defer p.wg.Done()
	t := time.NewTicker(p.idle / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			if !p.retire(now.Add(-p.idle)) {
				return
			}
		}
	}
}

// retire stops the idle workers idle since before cutoff; it returns false,
// and the reaper exits, when no worker is left.
func (p *Pool) retire(cutoff time.Time) bool {
	p.mu.Lock()
	n := 0
	for n < len(p.ready) && p.ready[n].since.Before(cutoff) {
		p.ready[n].next <- nil
		p.ready[n] = nil
		n++
	}
	if n > 0 {
		p.ready = append(p.ready[:0], p.ready[n:]...)
		clear(p.ready[len(p.ready) : len(p.ready)+n])
		p.workers -= n
	}
	more := p.workers > 0
	if !more {
		p.reaping = false
	}
	p.mu.Unlock()
	return more
}

// Workers returns the number of warm workers (idle or busy).
func (p *Pool) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers
}

// Close retires every worker: the idle ones exit now, the busy ones after
// their function. Functions given to Go later run on goroutines of their
// own.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.stop)
	for i, w := range p.ready {
		w.next <- nil
		p.ready[i] = nil
	}
	p.workers -= len(p.ready)
	p.ready = nil
}

// Wait waits for every goroutine the pool started.
func (p *Pool) Wait() { p.wg.Wait() }
