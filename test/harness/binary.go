package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// EnvBinary names an environment variable holding the path of a prebuilt
// imnode binary; when set, Binary uses it instead of building one.
const EnvBinary = "IMNODE_BIN"

// imnodePackage is the import path built by Binary.
const imnodePackage = "github.com/imcluster/imcluster/node/cmd/imnode"

// built is the binary Binary made; one build per test binary.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of the imnode binary: $IMNODE_BIN if set, else a
// binary built with `go build` on the first call (later calls return the
// same path or error). It is safe for concurrent use. The build runs in the
// current directory, which must be inside the imcluster module (a test's
// package directory is).
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "imcluster-harness-")
		if err != nil {
			built.err = fmt.Errorf("harness: build imnode: %w", err)
			return
		}
		built.dir = dir
		path := filepath.Join(dir, "imnode")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", path, imnodePackage)
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("harness: go build %s: %w\n%s", imnodePackage, err, out)
			return
		}
		built.path = path
	})
	return built.path, built.err
}

// Main runs the tests and then removes the binary Binary built, returning
// m.Run's exit code. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	return code
}
