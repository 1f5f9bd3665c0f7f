# Operator: IMCluster API, CRD/RBAC generation, envtest assets and suites.

CONTROLLER_TOOLS_VERSION := v0.23.0
CONTROLLER_GEN := $(CACHE_DIR)/bin/controller-gen-$(CONTROLLER_TOOLS_VERSION)
# Start timeout of kube-apiserver and etcd under envtest: 2 shared cores are slow.
ENVTEST_START_TIMEOUT ?= 180s

$(CONTROLLER_GEN):
	mkdir -p $(CACHE_DIR)/bin
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION) && mv $$tmp/controller-gen $@ && rm -rf $$tmp

##@ Operator

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the IMCluster CRD into config/crd/bases and RBAC into config/rbac.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=imcluster-operator paths=./operator/... output:rbac:artifacts:config=config/rbac

.PHONY: generate-operator
generate-operator: $(CONTROLLER_GEN) ## Generate the deepcopy code of api/v1.
	$(CONTROLLER_GEN) object paths=./api/...

generate: generate-operator

.PHONY: envtest-assets
envtest-assets: ## Build (or reuse) kube-apiserver and etcd for envtest and print their directory.
	@CACHE_DIR=$(CACHE_DIR) hack/envtest-assets.sh

.PHONY: build-operator
build-operator: ## Build bin/imcluster-operator.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/imcluster-operator ./operator/cmd

.PHONY: test-operator
test-operator: ## Run the operator envtest suites against a real kube-apiserver and etcd.
	assets=$$(CACHE_DIR=$(CACHE_DIR) hack/envtest-assets.sh) && \
	KUBEBUILDER_ASSETS=$$assets \
	KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=$(ENVTEST_START_TIMEOUT) \
	KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT=60s \
	$(GO) test -tags envtest -count=1 -p 1 -timeout 20m ./api/... ./operator/...

PRE_GO_TESTS += test-operator
