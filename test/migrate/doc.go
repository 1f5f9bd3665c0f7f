// Package migrate tests `imnode import` end to end: a source imcluster
// (real imnode processes serving the same server REST API as LeanCloud) is
// imported into a fresh cluster, verified message by message, and imported
// again to check that nothing is imported twice; a recorded LeanCloud export
// is imported from a file. BenchmarkImport measures the throughput quoted in
// docs/benchmarks.md and docs/migrate.md.
package migrate
