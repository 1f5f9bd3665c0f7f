##@ Browser check (test/browser)

BROWSER_DIR := test/browser
BROWSER_NPM_CACHE := $(CACHE_DIR)/npm
CHROMIUM_BIN ?= /usr/bin/chromium

PRE_GO_TESTS += test-browser

.PHONY: test-browser
test-browser: ## Run the official LeanCloud browser SDK builds in headless Chromium (playwright-core) against imnode.
	@command -v node >/dev/null || { echo "node (>= 20) is required for test-browser" >&2; exit 1; }
	@if [ ! -x $(CHROMIUM_BIN) ]; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; \
	fi
	cd $(BROWSER_DIR) && npm ci --cache $(BROWSER_NPM_CACHE) --prefer-offline --no-audit --no-fund
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/imnode ./node/cmd/imnode
	cd $(BROWSER_DIR) && IMNODE_BIN=$(BIN_DIR)/imnode CHROMIUM_BIN=$(CHROMIUM_BIN) \
		node --test --test-concurrency=1 --test-timeout=90000 tests/
