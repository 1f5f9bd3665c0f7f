#!/usr/bin/env bash
# Runs the Helm chart tests (test/chart, build tag "chart"): helm lint --strict for every
# ci/*-values.yaml, rendering checks, server-side dry-run validation of every rendered object
# against a real kube-apiserver, and helm install/upgrade/uninstall against it.
#
# Helm is the pinned Go library from go.mod (helm.sh/helm/v3), so no helm binary is needed.
# kube-apiserver and etcd come from hack/envtest-assets.sh (built from the Go module proxy on
# first use, then reused from the cache).
#
# Environment:
#   CACHE_DIR          cache root (default ~/.cache/imcluster)
#   CHART_TEST_ARGS    extra `go test` arguments, e.g. "-run TestChartLint -v"
set -euo pipefail
cd "$(dirname "$0")/.."

export CACHE_DIR="${CACHE_DIR:-$HOME/.cache/imcluster}"
export GOTOOLCHAIN=local
GO="${GO:-go}"

start=$SECONDS
assets="$(hack/envtest-assets.sh)"
echo "chart-test: envtest assets in $assets ($((SECONDS - start))s)" >&2

export KUBEBUILDER_ASSETS="$assets"
export KUBEBUILDER_CONTROLPLANE_START_TIMEOUT="${KUBEBUILDER_CONTROLPLANE_START_TIMEOUT:-180s}"
export KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT="${KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT:-60s}"

# Like the released helm CLI: Helm's offline Kubernetes version (helm template, helm lint and its
# deprecated-API check) is the minor version of the client-go it is built with.
k8s_minor="$("$GO" list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
ldflags=""
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

# shellcheck disable=SC2086 # CHART_TEST_ARGS is a list of flags
"$GO" test -tags chart -count=1 -timeout 15m -ldflags "$ldflags" ${CHART_TEST_ARGS:-} ./test/chart/...
