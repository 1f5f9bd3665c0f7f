//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// EnvTranscript names a file the test writes the `kubectl get imc -w` view
// of the whole run to (docs/operator.md shows the scale 3 -> 5 -> 3 part).
const EnvTranscript = "E2E_TRANSCRIPT"

// transcript records the IMCluster as `kubectl get imc -w -o wide` prints
// it: one row per update that changed a printed column.
var transcript struct {
	mu   sync.Mutex
	rows [][]string
	last string
}

func startTranscript(w *world) {
	ctx := w.t.Context()
	list := &imv1.IMClusterList{}
	wt, err := w.c.Watch(ctx, list, client.InNamespace(ns))
	if err != nil {
		w.t.Fatal(err)
	}
	go func() {
		defer wt.Stop()
		for ev := range wt.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			c, ok := ev.Object.(*imv1.IMCluster)
			if !ok {
				continue
			}
			record(c)
		}
	}()
}

func record(c *imv1.IMCluster) {
	available := ""
	if cond := meta.FindStatusCondition(c.Status.Conditions, imv1.ConditionAvailable); cond != nil {
		available = string(cond.Status)
	}
	row := []string{c.Name, fmt.Sprint(c.Spec.Replicas), fmt.Sprint(c.Status.ReadyReplicas), c.Status.CurrentVersion,
		string(c.Status.Phase), fmt.Sprint(c.Status.Shards.UnderReplicated), available}
	key := strings.Join(row, "\t")
	row = append(row, duration.HumanDuration(time.Since(c.CreationTimestamp.Time)))
	transcript.mu.Lock()
	defer transcript.mu.Unlock()
	if key == transcript.last {
		return
	}
	transcript.last = key
	transcript.rows = append(transcript.rows, row)
}

// writeTranscript logs the transcript and writes it to $E2E_TRANSCRIPT.
func writeTranscript(t *testing.T, _ *world) {
	transcript.mu.Lock()
	rows := transcript.rows
	transcript.mu.Unlock()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NAME\tREPLICAS\tREADY\tVERSION\tPHASE\tUNDER-REPLICATED\tAVAILABLE\tAGE")
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	t.Logf("kubectl get imc -w -o wide, as recorded:\n%s", b.String())
	if path := os.Getenv(EnvTranscript); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write transcript: %v", err)
		}
	}
}
