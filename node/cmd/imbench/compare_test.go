package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompare builds the summary from results of three systems and checks
// the figures and ratios it prints, to the baseline and for a --versus pair.
func TestCompare(t *testing.T) {
	step := func(rate, acked, p99, cpu float64, ok bool) stepResult {
		return stepResult{RatePerClient: rate, AckedPerSecond: acked, DeliveredPerSec: acked, Acked: 100,
			SendToReceive: latency{P99Ms: p99}, ServerCPUSeconds: 1, ServerCPUPerMessageMs: cpu, MeetsSLO: ok}
	}
	results := []*result{
		{Label: "imnode", Shape: shapePairs, Best: 1, Steps: []stepResult{step(1, 1000, 10, 0.30, true), step(2, 2000, 50, 0.25, true), step(3, 2500, 300, 0.2, false)}},
		{Label: "imnode", Shape: shapeRoom, Best: 0, Steps: []stepResult{step(10, 9000, 20, 0, true)}},
		{Label: "imnode", Shape: shapeIdle, Best: -1, Idle: &idleResult{RSSPerSocketKB: 40}},
		{Label: "centrifugo", Shape: shapePairs, Best: 3, Steps: []stepResult{step(1, 1000, 5, 0.15, true), step(2, 2000, 6, 0.10, true), step(3, 3000, 9, 0.09, true), step(4, 4000, 25, 0.08, true)}},
		{Label: "centrifugo", Shape: shapeRoom, Best: 0, Steps: []stepResult{step(10, 10000, 10, 0, true)}},
		{Label: "centrifugo", Shape: shapeIdle, Best: -1, Idle: &idleResult{RSSPerSocketKB: 20}},
		{Label: "imnode-3", Shape: shapePairs, Best: 1, Steps: []stepResult{step(1, 1000, 40, 0.6, true), step(2, 2000, 90, 0.5, true), step(3, 2100, 300, 0.55, false)}},
	}
	dir := t.TempDir()
	var files []string
	for i, r := range results {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, string(rune('a'+i))+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	var out strings.Builder
	if err := compareMain(append([]string{"--baseline", "centrifugo", "--versus", "imnode-3/imnode"}, files...), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 7 {
		t.Fatalf("want header, three systems, two ratio lines to the baseline and one versus line:\n%s", out.String())
	}
	// The common rate is 3/client, the highest both ran (imnode's step 3
	// missed the SLO and ended its run); CPU there is 0.2 vs 0.09.
	want := [][]string{
		{"imnode", "2000", "50.0", "0.250", "0.200", "9000", "20.0", "40.0"},
		{"centrifugo", "4000", "25.0", "0.080", "0.090", "10000", "10.0", "20.0"},
		{"imnode-3", "2000", "90.0", "0.500", "0.550", "-", "-", "-"},
		{"imnode/cent", "0.50x", "2.00x", "3.12x", "2.22x", "0.90x", "2.00x", "2.00x"},
		{"imnode-3/cent", "0.50x", "3.60x", "6.25x", "6.11x", "-", "-", "-"},
		{"imnode-3/imnode", "1.00x", "1.80x", "2.00x", "2.75x", "-", "-", "-"},
	}
	if !strings.Contains(lines[0], "cpu ms/msg@3/c") {
		t.Errorf("header %q lacks the common rate", lines[0])
	}
	for i, w := range want {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d = %q, want %q", i+1, got, w)
		}
	}
	if err := compareMain(nil, &out); err == nil {
		t.Error("compare without files succeeded")
	}
	if err := compareMain(append([]string{"--versus", "imnode-3"}, files...), &out); err == nil {
		t.Error("--versus without a second label succeeded")
	}
}
