// Command chartsync writes the generated parts of charts/imcluster (the IMCluster CRD template, the
// operator's ClusterRole and the cluster.spec part of values.schema.json) from config/. Run it from the
// repository root, through `make chart-sync`.
package main

import (
	"fmt"
	"os"

	"github.com/imcluster/imcluster/test/chart/chartgen"
)

func main() {
	files, err := chartgen.Files(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart-sync:", err)
		os.Exit(1)
	}
	changed, err := chartgen.Write(".", files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart-sync:", err)
		os.Exit(1)
	}
	for _, p := range changed {
		fmt.Println("chart-sync: wrote", p)
	}
}
