##@ Client and load tool

BENCH_ARGS ?= --clients 1000 --conns 100 --rate 1 --duration 30s

.PHONY: imbench
imbench: ## Build the imbench load tool into ./bin.
	$(GO) build -o $(BIN_DIR)/imbench ./node/cmd/imbench

.PHONY: bench-local
bench-local: build ## Start one imnode on 127.0.0.1 (temp data dir) and run imbench against it with BENCH_ARGS.
	@dir=$$(mktemp -d); \
	$(BIN_DIR)/imnode --data-dir $$dir/data --client-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --dev-app \
		--addr-file $$dir/addr.json >$$dir/imnode.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf $$dir' EXIT; \
	for _ in $$(seq 200); do test -s $$dir/addr.json && break; sleep 0.1; done; \
	addr=$$(sed -E 's/.*"client":"([^"]+)".*/\1/' $$dir/addr.json); \
	echo "imbench --url ws://$$addr/ $(BENCH_ARGS)"; \
	$(BIN_DIR)/imbench --url ws://$$addr/ $(BENCH_ARGS)
