// Package chart tests the Helm chart in charts/imcluster with Helm itself (helm.sh/helm/v3 as a
// library, pinned in go.mod) and a real kube-apiserver and etcd (envtest, built by
// hack/envtest-assets.sh): lint, rendering, server-side validation of every rendered object, and
// install, upgrade and uninstall.
//
// The tests carry the build tag "chart" and need KUBEBUILDER_ASSETS: run them with `make test-helm`
// (hack/chart-test.sh), which provides both. Without the tag the package has no tests.
package chart
