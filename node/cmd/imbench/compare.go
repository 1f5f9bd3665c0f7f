package main

// `imbench compare`: the summary table of `make bench-compare`, read from the
// JSON results of several runs (--json), grouped by their --label.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// systemSummary is what compare reports for one label.
type systemSummary struct {
	Label string
	// pairs and room are the best steps at the SLO (nil: none met it or no
	// run); pairsRuns/roomRuns are the whole runs.
	pairs, room       *stepResult
	pairsRun, roomRun *result
	idle              *idleResult
}

// compareMain reads result files and prints, per label, the throughput at
// the SLO, the server CPU per message, the p99 and the memory per idle
// socket, the ratios of every label to the baseline, and those of each
// --versus pair.
func compareMain(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("imbench compare", flag.ContinueOnError)
	baseline := fs.String("baseline", "centrifugo", "label the others are compared with")
	var versus []string
	fs.Func("versus", "A/B: also print the ratios of label A to label B (repeatable; e.g. imnode-3/imnode-1)", func(v string) error {
		a, b, ok := strings.Cut(v, "/")
		if !ok || a == "" || b == "" {
			return fmt.Errorf("--versus wants two labels as A/B, got %q", v)
		}
		versus = append(versus, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("compare: need result files (imbench --label L --json FILE)")
	}
	var results []*result
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f) //nolint:gosec // the operator names the result files
		if err != nil {
			return err
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("compare: %s: %w", f, err)
		}
		if r.Label == "" {
			return fmt.Errorf("compare: %s has no label", f)
		}
		results = append(results, &r)
	}
	_, err := io.WriteString(out, compare(results, *baseline, versus...))
	return err
}

// summarize groups the results by label, in the order of first appearance.
func summarize(results []*result) []*systemSummary {
	var out []*systemSummary
	for _, r := range results {
		i := slices.IndexFunc(out, func(s *systemSummary) bool { return s.Label == r.Label })
		if i < 0 {
			out = append(out, &systemSummary{Label: r.Label})
			i = len(out) - 1
		}
		s := out[i]
		var best *stepResult
		if r.Best >= 0 && r.Best < len(r.Steps) {
			best = &r.Steps[r.Best]
		}
		switch r.Shape {
		case shapePairs:
			s.pairs, s.pairsRun = best, r
		case shapeRoom:
			s.room, s.roomRun = best, r
		case shapeIdle:
			s.idle = r.Idle
		}
	}
	return out
}

// cpuAt returns the server CPU per message of run r's step at rate, if it ran.
func cpuAt(r *result, rate float64) (float64, bool) {
	if r == nil {
		return 0, false
	}
	for _, s := range r.Steps {
		if s.RatePerClient == rate && s.Acked > 0 {
			return s.ServerCPUPerMessageMs, true
		}
	}
	return 0, false
}

// commonRate is the highest pairs rate every system ran (0 if one has no
// pairs run): the server CPU per message is compared there, at the same
// offered load, whether or not the step met the SLO (on a busy machine none
// may).
func commonRate(sums []*systemSummary) float64 {
	common := -1.0
	for _, s := range sums {
		if s.pairsRun == nil || len(s.pairsRun.Steps) == 0 {
			return 0
		}
		ran := 0.0
		for _, st := range s.pairsRun.Steps {
			ran = max(ran, st.RatePerClient)
		}
		if common < 0 || ran < common {
			common = ran
		}
	}
	return max(common, 0)
}

// compare prints the summary table: a line per label, then the ratios of
// every other label to baseline and of each versus pair ("A/B"), where both
// labels have results.
func compare(results []*result, baseline string, versus ...string) string {
	sums := summarize(results)
	common := commonRate(sums)
	var out strings.Builder
	na := func(ok bool, format string, v float64) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	commonHdr := "cpu ms/msg@common"
	if common > 0 {
		commonHdr = fmt.Sprintf("cpu ms/msg@%g/c", common)
	}
	fmt.Fprintf(&out, "%-12s %14s %12s %14s %14s %18s %12s %16s\n", "system", "1:1 msg/s@SLO", "1:1 p99 ms",
		"cpu ms/msg@SLO", commonHdr, "room deliv/s@SLO", "room p99 ms", "idle KiB/socket")
	type row struct{ pairs, p99, cpu, cpuCommon, room, roomP99, idle float64 }
	rows := map[string]row{}
	oks := map[string][7]bool{}
	for _, s := range sums {
		var r row
		var ok [7]bool
		if s.pairs != nil {
			r.pairs, r.p99, r.cpu = s.pairs.AckedPerSecond, s.pairs.SendToReceive.P99Ms, s.pairs.ServerCPUPerMessageMs
			ok[0], ok[1], ok[2] = true, true, s.pairs.ServerCPUSeconds > 0
		}
		r.cpuCommon, ok[3] = cpuAt(s.pairsRun, common)
		ok[3] = ok[3] && common > 0 && r.cpuCommon > 0
		if s.room != nil {
			r.room, r.roomP99 = s.room.DeliveredPerSec, s.room.SendToReceive.P99Ms
			ok[4], ok[5] = true, true
		}
		if s.idle != nil {
			r.idle, ok[6] = s.idle.RSSPerSocketKB, true
		}
		rows[s.Label], oks[s.Label] = r, ok
		fmt.Fprintf(&out, "%-12s %14s %12s %14s %14s %18s %12s %16s\n", s.Label, na(ok[0], "%.0f", r.pairs), na(ok[1], "%.1f", r.p99),
			na(ok[2], "%.3f", r.cpu), na(ok[3], "%.3f", r.cpuCommon), na(ok[4], "%.0f", r.room), na(ok[5], "%.1f", r.roomP99),
			na(ok[6], "%.1f", r.idle))
	}
	ratio := func(ok bool, x, y float64) string {
		if !ok || y == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", x/y)
	}
	// ratios prints the line of label a's figures over label b's.
	ratios := func(name, a, b string) {
		r, ok := rows[a]
		base, haveBase := rows[b]
		if !ok || !haveBase {
			return
		}
		rok, bok := oks[a], oks[b]
		fmt.Fprintf(&out, "%-12s %14s %12s %14s %14s %18s %12s %16s\n", name,
			ratio(rok[0] && bok[0], r.pairs, base.pairs), ratio(rok[1] && bok[1], r.p99, base.p99),
			ratio(rok[2] && bok[2], r.cpu, base.cpu), ratio(rok[3] && bok[3], r.cpuCommon, base.cpuCommon),
			ratio(rok[4] && bok[4], r.room, base.room), ratio(rok[5] && bok[5], r.roomP99, base.roomP99),
			ratio(rok[6] && bok[6], r.idle, base.idle))
	}
	for _, s := range sums {
		if s.Label != baseline {
			ratios(s.Label+"/"+baseline[:min(len(baseline), 4)], s.Label, baseline)
		}
	}
	for _, v := range versus {
		a, b, _ := strings.Cut(v, "/")
		ratios(v, a, b)
	}
	return out.String()
}
