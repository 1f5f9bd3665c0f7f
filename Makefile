# imcluster Makefile. `make help` lists the targets.
#
# Tools and caches live outside the repository, under $(CACHE_DIR), keyed by
# version, so a fresh clone reuses what an earlier run built or downloaded.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
CACHE_DIR ?= $(HOME)/.cache/imcluster
BIN_DIR := $(CURDIR)/bin
export GOTOOLCHAIN := local

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/imcluster/imcluster/node.Version=$(VERSION) -X github.com/imcluster/imcluster/operator/internal/controller.Version=$(VERSION)

# Test targets from the fragments in hack/make; each fragment appends to
# PRE_GO_TESTS. `make test` runs those first and the Go test suite last, so the
# go test output ends the run.
PRE_GO_TESTS :=

GOLANGCI_LINT_VERSION := v2.15.0
PROTOC_GEN_GO_VERSION := v1.36.12

-include hack/make/*.mk

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-22s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: run
run: build ## Start a local imcluster with the built-in development app and print how to connect.
	@hack/run-local.sh

.PHONY: build
build: ## Build the binaries into ./bin.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/ ./node/cmd/...

.PHONY: fmt
fmt: ## Format the Go code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

GOLANGCI_LINT := $(CACHE_DIR)/bin/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(GOLANGCI_LINT):
	mkdir -p $(CACHE_DIR)/bin
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && mv $$tmp/golangci-lint $@ && rm -rf $$tmp

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned, installed into the cache).
	$(GOLANGCI_LINT) run ./...

.PHONY: generate
generate: ## Regenerate protobuf code (and, with the operator fragment, deepcopy).
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
	GOBIN=$(CACHE_DIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	cd node/protocol/pb && PATH=$(CACHE_DIR)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative messages.proto

##@ Testing

.PHONY: test
test: $(PRE_GO_TESTS) test-go ## Run the whole suite (all test targets, Go tests last).

.PHONY: test-go
test-go: ## Go unit and integration tests, with -race on node and client.
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /node/ -e /node$$ -e /client)
	$(GO) test -race -count=1 ./node/... ./client/...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s).
	$(GO) test ./node/protocol -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-30s}
