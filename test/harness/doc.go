// Package harness runs real imnode processes on 127.0.0.1 for cluster tests:
// Start(t, n, opts) builds imnode once per test binary, starts n nodes with
// every port 0 (the first without --join, the others joining it), waits until
// every node's /readyz answers 200 and every node's GET /admin/v1/cluster
// lists all of them alive and active, and kills them in t.Cleanup. Each Node
// can be killed (SIGKILL), stopped (SIGTERM), restarted on the same id and
// data directory, and partitioned from others when the cluster runs with
// Options.FaultInjection.
//
// Each process's stderr goes to a log file in the test's temporary
// directory; when the test failed the tails of all logs are written to the
// test log in t.Cleanup, and a node that exited without being asked to is
// reported as a test error.
//
// The binary: Binary builds github.com/imcluster/imcluster/node/cmd/imnode
// with `go build` into a temporary directory on first use, or uses the file
// named by the IMNODE_BIN environment variable. Call Main from TestMain to
// remove the temporary directory when the test binary ends.
//
// What it must not do: import node internals (only node/adminapi and
// node/apps, the public contracts), bind anything but 127.0.0.1, or sleep
// without a deadline. Its API only grows: other suites (chaos runs) build on
// it.
package harness
