#!/usr/bin/env bash
# Copies the operator's generated manifests into the Helm chart: the IMCluster CRD
# (config/crd/bases -> charts/imcluster/templates/crds, with helm.sh/resource-policy: keep),
# the operator's ClusterRole rules (config/rbac/role.yaml -> templates/rbac/manager-role.yaml)
# and the IMCluster spec schema (-> values.schema.json, properties.cluster.properties.spec).
# Run after `make manifests`; the chart tests (TestChartSync) fail while the chart is out of step.
set -euo pipefail
cd "$(dirname "$0")/.."
GOTOOLCHAIN=local "${GO:-go}" run ./test/chart/chartsync
