package harness

import (
	"syscall"
	"testing"
	"time"
)

// ProcessCPU returns the CPU time (user and system) this process has used
// so far: benchmarks report the difference per operation, which counts the
// work of every goroutine an operation causes, not only the wall time of
// the benchmark's own.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
