##@ Migration (imnode import; docs/migrate.md)

.PHONY: test-migrate
test-migrate: ## imnode import end to end: a source cluster into a fresh one, verified message by message (also part of test-go).
	$(GO) test -count=1 -v ./test/migrate/...

# IMPORT_CONVERSATIONS x IMPORT_MESSAGES is the history size of bench-import.
IMPORT_CONVERSATIONS ?= 1000
IMPORT_MESSAGES ?= 200

.PHONY: bench-import
bench-import: ## Import IMPORT_CONVERSATIONS x IMPORT_MESSAGES (1000 x 200) from a source cluster into a fresh three-node one; prints msg/s (docs/benchmarks.md).
	IMPORT_CONVERSATIONS=$(IMPORT_CONVERSATIONS) IMPORT_MESSAGES=$(IMPORT_MESSAGES) \
		$(GO) test -count=1 -run '^$$' -bench BenchmarkImport -benchtime 1x -timeout 60m -v ./test/migrate/
