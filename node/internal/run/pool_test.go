package run

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goid returns the calling goroutine's id (from its stack trace header).
func goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolReusesWarmWorker: a function given to Go after another finished
// runs on the same goroutine (the warm worker), not a new one.
func TestPoolReusesWarmWorker(t *testing.T) {
	p := NewPool(4, time.Minute)
	defer p.Wait()
	defer p.Close()
	ids := make(chan uint64, 1)
	p.Go(func() { ids <- goid() })
	first := <-ids
	// The worker parks after its function returns.
	waitFor(t, "the worker to park", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == 1
	})
	for range 3 {
		p.Go(func() { ids <- goid() })
		if id := <-ids; id != first {
			t.Fatalf("function ran on goroutine %d, the warm worker is %d", id, first)
		}
		waitFor(t, "the worker to park", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.ready) == 1
		})
	}
	if n := p.Workers(); n != 1 {
		t.Fatalf("%d workers, want 1", n)
	}
}

// TestPoolBoundedAndNeverBlocks: with every one of its max workers busy,
// Go still runs a function at once (on a goroutine of its own that is not
// kept), and the pool never holds more than max workers.
func TestPoolBoundedAndNeverBlocks(t *testing.T) {
	const maxWorkers = 3
	p := NewPool(maxWorkers, time.Minute)
	defer p.Wait()
	defer p.Close()
	releaseCh := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseCh) })
	defer release() // before Close and Wait, also when the test fails
	started := make(chan struct{}, maxWorkers)
	for range maxWorkers {
		p.Go(func() {
			started <- struct{}{}
			<-releaseCh
		})
	}
	for range maxWorkers {
		<-started
	}
	// Every worker is blocked: the extra functions must run anyway,
	// each while the others still wait.
	done := make(chan struct{})
	for range 5 {
		p.Go(func() { done <- struct{}{} })
	}
	for range 5 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a function given to a pool whose workers are all busy did not run")
		}
	}
	if n := p.Workers(); n != maxWorkers {
		t.Fatalf("%d workers, want the bound %d", n, maxWorkers)
	}
	release()
	waitFor(t, "the workers to park", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == maxWorkers
	})
	if n := p.Workers(); n != maxWorkers {
		t.Fatalf("%d workers after the burst, want %d", n, maxWorkers)
	}
}

// TestPoolIdleWorkersExit: workers without work for the idle time exit,
// and so does the reaper once no worker is left (goleak checks it at the
// end of the package's tests); a later Go starts them again.
func TestPoolIdleWorkersExit(t *testing.T) {
	p := NewPool(4, 20*time.Millisecond)
	defer p.Wait()
	defer p.Close()
	for range 2 {
		done := make(chan struct{}, 2)
		release := make(chan struct{})
		for range 2 {
			p.Go(func() {
				<-release
				done <- struct{}{}
			})
		}
		close(release)
		<-done
		<-done
		waitFor(t, "idle workers to exit", func() bool { return p.Workers() == 0 })
		waitFor(t, "the reaper to stop", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return !p.reaping
		})
	}
}

// TestPoolCloseStopsWorkers: Close retires idle workers at once and busy
// ones after their function; Wait returns when all have exited, and a
// function given after Close still runs.
func TestPoolCloseStopsWorkers(t *testing.T) {
	p := NewPool(4, time.Hour)
	release := make(chan struct{})
	busy := make(chan struct{})
	p.Go(func() {
		close(busy)
		<-release
	})
	idle := make(chan struct{})
	p.Go(func() { close(idle) })
	<-busy
	<-idle
	p.Close()
	ran := make(chan struct{})
	p.Go(func() { close(ran) })
	<-ran
	waited := make(chan struct{})
	go func() {
		p.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned while a worker ran its function")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close and the last function")
	}
	if n := p.Workers(); n != 0 {
		t.Fatalf("%d workers after Close, want 0", n)
	}
}

// countTask is a Task that counts its runs.
type countTask struct{ runs chan struct{} }

func (c *countTask) Run() { c.runs <- struct{}{} }

// TestPoolRunDoesNotAllocate: handing a pointer Task to a warm worker
// costs no allocation.
func TestPoolRunDoesNotAllocate(t *testing.T) {
	p := NewPool(1, time.Minute)
	defer p.Wait()
	defer p.Close()
	task := &countTask{runs: make(chan struct{})}
	parked := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == 1
	}
	p.Run(task)
	<-task.runs
	waitFor(t, "the worker to park", parked)
	if allocs := testing.AllocsPerRun(50, func() {
		p.Run(task)
		<-task.runs
		waitFor(t, "the worker to park", parked)
	}); allocs != 0 {
		t.Fatalf("Run of a warm worker allocated %v times, want 0", allocs)
	}
}
