##@ Compatibility suite (test/compat)

COMPAT_DIR := test/compat
NPM_CACHE := $(CACHE_DIR)/npm
# The suite runs against a cluster the harness starts: COMPAT_NODES imnode
# processes joined over gossip, each SDK client pinned to one node (Tom, Jerry
# and Mary on different nodes). COMPAT_NODES=1 runs it against a single node.
COMPAT_NODES ?= 3
COMPAT_SHARDS ?= 32
COMPAT_REPLICATION_FACTOR ?= 3
COMPAT_WRITE_QUORUM ?= 2
# Every node's output of the last run, one file per test file and node.
COMPAT_LOG_DIR ?= $(CACHE_DIR)/compat-logs

PRE_GO_TESTS += test-compat

.PHONY: test-compat
test-compat: ## Run the seed guide's JavaScript examples with the official LeanCloud SDKs against a 3-node cluster (COMPAT_NODES=1: one node).
	@command -v node >/dev/null || { echo "node (>= 20) is required for test-compat" >&2; exit 1; }
	cd $(COMPAT_DIR) && npm ci --cache $(NPM_CACHE) --prefer-offline --no-audit --no-fund
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/imnode ./node/cmd/imnode
	rm -rf $(COMPAT_LOG_DIR)
	cd $(COMPAT_DIR) && IMNODE_BIN=$(BIN_DIR)/imnode IMNODE_LOG_DIR=$(COMPAT_LOG_DIR) \
	  IMCLUSTER_NODES=$(COMPAT_NODES) IMCLUSTER_SHARDS=$(COMPAT_SHARDS) \
	  IMCLUSTER_REPLICATION_FACTOR=$(COMPAT_REPLICATION_FACTOR) IMCLUSTER_WRITE_QUORUM=$(COMPAT_WRITE_QUORUM) \
	  node --test --test-concurrency=1 --test-timeout=180000 tests/ \
	  || { echo "test-compat failed ($(COMPAT_NODES) node(s)); node logs: $(COMPAT_LOG_DIR)" >&2; exit 1; }
