package cluster

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClusterLayering: the packages the cluster is built from (replica,
// route, presence, wire) never import the cluster package back; the
// cluster wires them together through their own small interfaces.
func TestClusterLayering(t *testing.T) {
	const self = "github.com/imcluster/imcluster/node/cluster"
	for _, pkg := range []string{"replica", "route", "presence", "wire"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/imcluster/imcluster/node/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps node/%s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list -deps node/%s listed nothing", pkg)
		}
		for _, d := range deps {
			if d == self {
				t.Errorf("node/%s imports node/cluster", pkg)
			}
		}
	}
}
