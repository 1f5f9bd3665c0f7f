package main

// Server process accounting from /proc (Linux): CPU time and context
// switches for the cost per message, resident memory for the idle shape.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user+system CPU seconds process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after it start at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / clockTicks, nil
}

// procRSS returns the resident memory of process pid in KiB.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procCtxSwitches returns the voluntary and involuntary context switches of
// every thread of process pid (threads that exited are not counted; Go
// rarely ends its threads).
func procCtxSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("/proc/%d/task: no threads (%v)", pid, err)
	}
	var n int64
	for _, f := range tasks {
		b, err := os.ReadFile(f) //nolint:gosec // a /proc path built from a process id
		if err != nil {
			continue // the thread exited
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s: %s: %w", f, k, err)
				}
				n += x
			}
		}
	}
	return n, nil
}

// usage is what the servers used so far.
type usage struct {
	cpu         float64 // seconds
	ctxSwitches int64
}

// totalUsage sums the CPU time and context switches of the processes.
func totalUsage(pids []int) (usage, error) {
	var u usage
	for _, p := range pids {
		c, err := procCPU(p)
		if err != nil {
			return u, err
		}
		n, err := procCtxSwitches(p)
		if err != nil {
			return u, err
		}
		u.cpu += c
		u.ctxSwitches += n
	}
	return u, nil
}

func totalRSS(pids []int) (int64, error) {
	var t int64
	for _, p := range pids {
		r, err := procRSS(p)
		if err != nil {
			return 0, err
		}
		t += r
	}
	return t, nil
}
