package controller

import (
	"strings"
	"testing"
)

// TestOperatorRulesScopedToTheCluster: every rule expression the operator
// renders selects only its own cluster's series (namespace and cluster name
// or peer Service in every selector).
func TestOperatorRulesScopedToTheCluster(t *testing.T) {
	c := fixture()
	spec, err := clusterRules(c)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range spec["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			rm := r.(map[string]any)
			expr := rm["expr"].(string)
			n++
			selectors := strings.Count(expr, "{")
			if selectors == 0 {
				t.Errorf("%s: no selector in %s", rm["alert"], expr)
			}
			if got := strings.Count(expr, `namespace="ns"`); got != selectors {
				t.Errorf("%s: %d of %d selectors scoped to the namespace: %s", rm["alert"], got, selectors, expr)
			}
			if !strings.Contains(expr, `service="chat-peers"`) && !strings.Contains(expr, `name="chat"`) &&
				!strings.Contains(expr, `persistentvolumeclaim=~"data-chat-[0-9]+"`) {
				t.Errorf("%s: not scoped to the cluster: %s", rm["alert"], expr)
			}
		}
	}
	if n < 8 {
		t.Fatalf("%d rules, want the 8 alerts of rules.yaml", n)
	}
}
