# Helm chart (charts/imcluster), container image and their tests.

HELM_VERSION := v3.22.0
HELM := $(CACHE_DIR)/bin/helm-$(HELM_VERSION)
IMG ?= imcluster/imnode:$(VERSION)

##@ Chart and image

.PHONY: chart-sync
chart-sync: ## Copy the CRD, RBAC rules and spec schema from config/ into the chart (after `make manifests`).
	GO=$(GO) hack/chart-sync.sh

.PHONY: test-helm
test-helm: ## Chart tests: lint --strict per ci/*-values.yaml, API-server dry-run, helm install/upgrade on envtest.
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) hack/chart-test.sh

.PHONY: helm-lint
helm-lint: ## helm lint --strict for the defaults and every ci/*-values.yaml (no API server needed).
	GOTOOLCHAIN=local $(GO) test -tags chart -count=1 -ldflags "$(HELM_LDFLAGS)" -run 'TestChart(Sync|Lint|SchemaRejects|TemplateFails|Render)$$' ./test/chart/...

# Like helm's own release build: the offline Kubernetes version is client-go's minor (v0.37 -> v1.37).
HELM_K8S_MINOR = $(shell $(GO) list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
HELM_LDFLAGS = $(foreach p,lint/rules chartutil,-X helm.sh/helm/v3/pkg/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$(p).k8sVersionMinor=$(HELM_K8S_MINOR))

$(HELM):
	mkdir -p $(CACHE_DIR)/bin
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install -ldflags "$(HELM_LDFLAGS) -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) && mv $$tmp/helm $@ && rm -rf $$tmp

.PHONY: helm
helm: $(HELM) ## Build the pinned helm CLI into the cache (for `helm package`, `helm install` by hand) and print its path.
	@echo $(HELM)

.PHONY: helm-package
helm-package: $(HELM) ## Package the chart into dist/.
	$(HELM) package charts/imcluster --destination dist

.PHONY: docker-build
docker-build: ## Build the image (imnode + imcluster-operator) as $(IMG), stamped with $(VERSION).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

PRE_GO_TESTS += test-helm
