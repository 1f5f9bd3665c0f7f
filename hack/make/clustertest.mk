##@ Cluster tests (test/cluster, test/harness)

.PHONY: test-cluster
test-cluster: ## Multi-node tests: real imnode processes on 127.0.0.1 (also part of test-go). RUN=regexp narrows them.
	$(GO) test -count=1 -v -run '$(or $(RUN),.)' ./test/harness/... ./test/cluster/...
