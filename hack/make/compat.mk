##@ Compatibility suite (test/compat)

COMPAT_DIR := test/compat
NPM_CACHE := $(CACHE_DIR)/npm

PRE_GO_TESTS += test-compat

.PHONY: test-compat
test-compat: ## Run the seed guide's JavaScript examples with the official LeanCloud SDKs against imnode.
	@command -v node >/dev/null || { echo "node (>= 20) is required for test-compat" >&2; exit 1; }
	cd $(COMPAT_DIR) && npm ci --cache $(NPM_CACHE) --prefer-offline --no-audit --no-fund
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/imnode ./node/cmd/imnode
	cd $(COMPAT_DIR) && IMNODE_BIN=$(BIN_DIR)/imnode node --test --test-concurrency=1 --test-timeout=180000 tests/
