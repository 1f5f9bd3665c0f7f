##@ End to end (test/e2e)

# The operator on real nodes: etcd, kube-apiserver and kube-controller-manager
# (hack/envtest-assets.sh, the same cached build as test-operator), the
# operator binary, and the test kubelet of test/e2e running every pod as a
# real imnode process on its own 127.x.y.z address. Needs root (the kubelet
# uses mount namespaces and chroot). E2E_TRANSCRIPT, when set, is a file the
# run writes its `kubectl get imc -w` view to.
E2E_TIMEOUT ?= 40m
E2E_TRANSCRIPT ?=

.PHONY: test-e2e
test-e2e: ## Operator e2e scenarios (create, scale 3->5->3, upgrade, pod loss, pause, operator restart) under chat load.
	assets=$$(CACHE_DIR=$(CACHE_DIR) hack/envtest-assets.sh) && \
	KUBEBUILDER_ASSETS=$$assets \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(ENVTEST_START_TIMEOUT) \
	KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT=60s \
	E2E_TRANSCRIPT=$(E2E_TRANSCRIPT) \
	$(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./test/e2e/

PRE_GO_TESTS += test-e2e
