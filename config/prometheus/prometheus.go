// Package prometheus holds the Prometheus alerting rules of imcluster
// (rules.yaml) for the operator to render into PrometheusRules, with their
// promtool unit tests (rules_test.yaml, `make test-monitoring`) and a test
// that every metric they name exists on a real node.
package prometheus

import _ "embed"

// Rules is rules.yaml: a Prometheus rule file (groups of alerting rules).
//
//go:embed rules.yaml
var Rules []byte
