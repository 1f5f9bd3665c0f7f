package migrate_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/imcluster/imcluster/node/importer"
	"github.com/imcluster/imcluster/test/harness"
)

// envInt reads a size from the environment.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s must be a positive integer, not %q", name, v)
	}
	return n
}

// BenchmarkImport imports IMPORT_CONVERSATIONS (default 1000) conversations
// of IMPORT_MESSAGES (default 200) messages each from a one-node source
// cluster into a fresh three-node cluster (R = 3, W = 2), all on this
// machine, verifies every message, and checks that a second run imports
// nothing. Run it with `make bench-import`; the figure is msg/s of the
// first run (reading the source, writing the target).
func BenchmarkImport(b *testing.B) {
	convs, msgs := envInt(b, "IMPORT_CONVERSATIONS", 1000), envInt(b, "IMPORT_MESSAGES", 200)
	workers := envInt(b, "IMPORT_WORKERS", 4)
	source := harness.Start(b, 1, harness.Options{LogLevel: "warn"})
	src := newAPI(b, source)
	fillBulk(b, src, convs, msgs)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		target := harness.Start(b, 3, harness.Options{LogLevel: "warn"})
		dst := newAPI(b, target)
		b.StartTimer()
		rep, err := importer.Run(b.Context(), importer.Config{Source: src.endpoint(), Target: dst.endpoint(), Unread: true, Moderation: true, Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if rep.Imported != int64(convs*msgs) {
			b.Fatalf("imported %d messages, want %d", rep.Imported, convs*msgs)
		}
		b.ReportMetric(rep.Rate(), "msg/s")
		b.ReportMetric(rep.Elapsed.Seconds(), "s/import")
		if n := verify(b, src, dst); n != convs*msgs {
			b.Fatalf("verified %d messages", n)
		}
		again, err := importer.Run(b.Context(), importer.Config{Source: src.endpoint(), Target: dst.endpoint(), Unread: true, Moderation: true, Workers: workers})
		if err != nil || again.Imported != 0 || again.NewConversations != 0 {
			b.Fatalf("second run: %v %+v", err, again.Progress)
		}
		b.Logf("%d conversations x %d messages: first run %s (%.0f msg/s), second run %s (imported 0)",
			convs, msgs, rep.Elapsed.Round(1e6), rep.Rate(), again.Elapsed.Round(1e6))
		b.StartTimer()
	}
}
