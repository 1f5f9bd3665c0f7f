package controller

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/config/prometheus"
)

// metricsJob is the job label the operator's ServiceMonitor gives every
// node target; config/prometheus/rules.yaml selects the nodes by it.
const metricsJob = "imnode"

// clusterRules returns the spec of c's PrometheusRule: the groups of
// config/prometheus/rules.yaml with every selector scoped to c, so two
// clusters' rules never alert on each other's series.
func clusterRules(c *imv1.IMCluster) (map[string]any, error) {
	var file map[string]any
	if err := yaml.Unmarshal(prometheus.Rules, &file); err != nil {
		return nil, fmt.Errorf("config/prometheus/rules.yaml: %w", err)
	}
	scope := strings.NewReplacer(
		`job="imnode"`, fmt.Sprintf(`job=%q,namespace=%q,service=%q`, metricsJob, c.Namespace, peerServiceName(c)),
		`persistentvolumeclaim=~"data-.+"`, fmt.Sprintf(`namespace=%q,persistentvolumeclaim=~"%s-%s-[0-9]+"`, c.Namespace, dataVolume, statefulSetName(c)),
		`type="ScaleDown"`, fmt.Sprintf(`type="ScaleDown",namespace=%q,name=%q`, c.Namespace, c.Name),
	)
	groups, _ := file["groups"].([]any)
	for _, g := range groups {
		gm, _ := g.(map[string]any)
		gm["name"] = fmt.Sprintf("%s/%s: %v", c.Namespace, c.Name, gm["name"])
		rules, _ := gm["rules"].([]any)
		for _, r := range rules {
			rm, _ := r.(map[string]any)
			expr, _ := rm["expr"].(string)
			rm["expr"] = scope.Replace(expr)
		}
	}
	return map[string]any{"groups": groups}, nil
}
