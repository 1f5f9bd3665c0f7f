##@ Cluster packages (node/ring, node/membership, node/transport)

.PHONY: fuzz-cluster
fuzz-cluster: ## Fuzz the peer frame and gossip meta decoders for FUZZTIME each (default 30s).
	$(GO) test ./node/transport -run '^$$' -fuzz FuzzDecodeFrame -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./node/membership -run '^$$' -fuzz FuzzDecodeMeta -fuzztime $${FUZZTIME:-30s}

.PHONY: bench-cluster
bench-cluster: ## Benchmarks of placement and the peer transport.
	$(GO) test ./node/ring ./node/transport -run '^$$' -bench . -benchtime $${BENCHTIME:-1s}
