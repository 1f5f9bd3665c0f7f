package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Fault kinds, the keys of Summary.Faults.
const (
	// FaultKill: SIGKILL a node, leave it down a few seconds, restart it on
	// its data directory.
	FaultKill = "kill+restart"
	// FaultPartition: cut a node's peer traffic from every other node, hold,
	// heal.
	FaultPartition = "partition+heal"
	// FaultJoin: add a node.
	FaultJoin = "join"
	// FaultDrain: drain a node until done, then stop it.
	FaultDrain = "drain+stop"
	// FaultWipe: SIGKILL a node, delete its data directory, restart it
	// empty (the loss of R-W = 1 node with its disk).
	FaultWipe = "kill+wipe+restart"
	// FaultNoJoin: SIGKILL a node and start it again without --join: it
	// must refuse (alone it would form a second cluster); then restart it
	// properly.
	FaultNoJoin = "restart-without-join"
	// FaultShards: start a new node with another shard count joining the
	// cluster: it must be refused.
	FaultShards = "join-other-shard-count"
	// FaultDuplicate: start a second process with a running node's id
	// joining the cluster: it must be refused and exit.
	FaultDuplicate = "join-duplicate-id"
	// FaultSkewWithin and FaultSkewBeyond: restart a node with its lease
	// and timestamp clock offset within (100ms) and beyond (2s) the lease
	// margin (0.2s local), hold under load, restart it with the real clock.
	FaultSkewWithin = "clock-skew-within-margin"
	FaultSkewBeyond = "clock-skew-beyond-margin"
	// FaultDiskFull: restart a node whose store writes fail with ENOSPC a
	// few seconds after it serves, wait for it to stop (exit status 3 and
	// "Disk full" from a failed commit, or a Pebble panic when it cannot
	// rotate its WAL; a node that goes on with failing writes is killed
	// after a minute), then restart it; nothing acknowledged may be lost.
	FaultDiskFull = "disk-full"
	// FaultDiskLow: make a node's store see its disk below the reserve
	// (POST /admin/v1/faults diskFreeMiB 0) under load: it must keep
	// running and refuse new writes while the others take them, hold, then
	// see its real disk again and catch up; no crash, nothing lost.
	FaultDiskLow = "disk-low"
)

// Summary is what a chaos run prints at its end.
type Summary struct {
	// Seed reproduces the choices of nodes, faults and conversations.
	Seed uint64
	// Duration is how long the load ran; Settle how long the cluster took
	// to converge once it stopped.
	Duration time.Duration
	Settle   time.Duration
	// NodesStart and NodesEnd are the running node counts.
	NodesStart, NodesEnd int
	// Senders and Conversations describe the load.
	Senders, Conversations int
	// Attempts, Acked and Abandoned come from the Ledger.
	Attempts, Acked, Abandoned int
	// Faults counts the injected faults by kind.
	Faults map[string]int
	// Errors counts the failed send attempts by class; Events the senders'
	// connection events.
	Errors map[string]int
	Events map[string]int
	// AcksVia counts the acks by the WebSocket URL of the node that
	// answered them.
	AcksVia map[string]int
	// MaxAckGap is the longest stretch without any ack, starting at
	// MaxAckGapFrom: a stall of the whole load.
	MaxAckGap     time.Duration
	MaxAckGapFrom time.Time
	// GapErrors are the failed attempts during the longest ack gap.
	GapErrors []ErrorEvent
	// ErrorGroups are the failed send attempts grouped by cause, server
	// answer, node, command and the fault in progress (Ledger.ErrorGroups).
	ErrorGroups []ErrorGroup
	// Refused counts the misconfigured starts that were refused, by
	// fault kind; Accepted those that were not (each one a failure).
	Refused, Accepted map[string]int
	// DiskFull counts how the disk-full faults ended.
	DiskFull map[string]int
	// Report is the verification outcome (nil if it did not run).
	Report *Report
}

// Retryable returns the failed attempts that were not permanent rejections.
func (s Summary) Retryable() int {
	n := 0
	for k, v := range s.Errors {
		if !strings.HasPrefix(k, ErrClassRejected) {
			n += v
		}
	}
	return n
}

// ByCause counts the failed attempts by cause (failing causes marked).
func (s Summary) ByCause() map[string]int {
	m := map[string]int{}
	for _, g := range s.ErrorGroups {
		k := g.Cause
		if Failing(k) {
			k += "(FAILS)"
		}
		m[k] += g.Count
	}
	return m
}

// Failing returns the error groups whose cause fails the run.
func (s Summary) Failing() []ErrorGroup {
	var out []ErrorGroup
	for _, g := range s.ErrorGroups {
		if Failing(g.Cause) {
			out = append(out, g)
		}
	}
	return out
}

// String formats one group on a line: count, cause, answer, command, node,
// fault and the times since the fault.
func (g ErrorGroup) String() string {
	answer := g.Class
	if g.Code != 0 {
		answer = fmt.Sprintf("%d %s %q", g.Code, g.Reason, g.Detail)
	}
	node := g.Node
	if node == "" {
		node = "?"
	}
	return fmt.Sprintf("%d× %s: %s on %s via %s during %s, %s..%s after its start, attempts up to %s (first %s)", g.Count,
		g.Cause, answer, g.Command, node, g.Fault, g.MinSince.Round(time.Millisecond), g.MaxSince.Round(time.Millisecond),
		g.MaxTook.Round(time.Millisecond), g.First.Format(time.StampMilli))
}

// Rejected returns the attempts the server rejected permanently.
func (s Summary) Rejected() int {
	n := 0
	for k, v := range s.Errors {
		if strings.HasPrefix(k, ErrClassRejected) {
			n += v
		}
	}
	return n
}

// String formats the summary as an aligned block.
func (s Summary) String() string {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-22s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	b.WriteString("chaos summary\n")
	line("seed", "%d", s.Seed)
	line("duration", "%s (settled in %s)", s.Duration.Round(time.Second), s.Settle.Round(100*time.Millisecond))
	line("nodes", "%d at start, %d at end", s.NodesStart, s.NodesEnd)
	line("load", "%d senders, %d conversations", s.Senders, s.Conversations)
	line("send attempts", "%d", s.Attempts)
	line("acknowledged", "%d", s.Acked)
	line("longest ack gap", "%s (from %s)", s.MaxAckGap.Round(time.Millisecond), s.MaxAckGapFrom.Format(time.StampMilli))
	if len(s.GapErrors) > 0 {
		line("errors in the gap", "%d %s", len(s.GapErrors), formatCounts(gapCounts(s.GapErrors)))
		for _, e := range firstPerKind(s.GapErrors) {
			fmt.Fprintf(&b, "  %24s %s %s via %s: %s\n", "", e.At.Format(time.StampMilli), e.Sender, e.Via, e.Err)
		}
	}
	line("abandoned", "%d (not acknowledged when the load stopped, or rejected)", s.Abandoned)
	total := 0
	for _, v := range s.Faults {
		total += v
	}
	line("faults", "%d %s", total, formatCounts(s.Faults))
	line("retryable errors", "%d %s", s.Retryable(), formatCounts(s.Errors))
	line("errors by cause", "%s", formatCounts(s.ByCause()))
	for _, g := range s.ErrorGroups {
		fmt.Fprintf(&b, "  %24s %s\n", "", g)
	}
	line("misconfigured starts", "refused %s, accepted %s", formatCounts(s.Refused), formatCounts(s.Accepted))
	line("disk-full outcomes", "%s", formatCounts(s.DiskFull))
	line("rejected", "%d", s.Rejected())
	line("client events", "%s", formatCounts(s.Events))
	line("acks via", "%s", formatCounts(s.AcksVia))
	if r := s.Report; r != nil {
		line("replicas read", "%d (conversation, replica) lists", r.Replicas)
		line("messages lost", "%d", r.Lost)
		line("missing on a replica", "%d", r.Missing)
		line("duplicate ids", "%d", r.DuplicateIDs)
		line("duplicate payloads", "%d (a retried send stored twice)", r.DuplicatePayloads)
		line("order violations", "%d stored, %d acknowledged", r.OrderViolations, r.AckOrderViolations)
		line("ts mismatches", "%d", r.TimestampMismatches)
		line("divergent convs", "%d", r.Divergent)
		line("stored unacked", "%d (allowed: attempts whose ack never arrived)", r.StoredUnacked)
	}
	return b.String()
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "{}"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// gapCounts counts errors by class and node.
func gapCounts(evs []ErrorEvent) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Class+" via "+e.Via]++
	}
	return m
}

// firstPerKind returns the first error of each (class, node).
func firstPerKind(evs []ErrorEvent) []ErrorEvent {
	seen := map[string]bool{}
	var out []ErrorEvent
	for _, e := range evs {
		if k := e.Class + e.Via; !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}
