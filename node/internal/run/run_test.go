package run

import (
	"testing"
	"time"
)

// TestGroupRunsInlineOutsideItsLifetime: before Open and after Close a
// function runs on the caller's goroutine (it has finished when Go
// returns); while open it runs on its own goroutine, which Wait waits for.
func TestGroupRunsInlineOutsideItsLifetime(t *testing.T) {
	var g Group
	ran := false
	g.Go(func() { ran = true })
	if !ran {
		t.Fatal("before Open: f had not run when Go returned")
	}

	g.Open()
	release, done := make(chan struct{}), make(chan struct{})
	g.Go(func() {
		<-release
		close(done)
	})
	// Go returned while f still waits: it runs on its own goroutine.
	close(release)
	g.Close()
	g.Wait()
	select {
	case <-done:
	default:
		t.Fatal("Wait returned before the group's goroutine ended")
	}

	ran = false
	g.Go(func() { ran = true })
	if !ran {
		t.Fatal("after Close: f had not run when Go returned")
	}
}

// TestGroupWaitWaits: Wait does not return while a goroutine of the group
// runs.
func TestGroupWaitWaits(t *testing.T) {
	var g Group
	g.Open()
	release := make(chan struct{})
	g.Go(func() { <-release })
	g.Close()
	waited := make(chan struct{})
	go func() {
		g.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned while the goroutine was blocked")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-waited
}
