##@ Benchmarks (imbench against local nodes; figures in docs/benchmarks.md)

# BENCH_ARGS are imbench's flags (the URLs are added by the target).
BENCH_ARGS ?= --clients 1000 --conns 100 --rate 1 --duration 30s
# BENCH_SHARDS is every node's --shards.
BENCH_SHARDS ?= 256
# BENCH_REPLICATION is R/W of bench-cluster-local: 3/2 (default) or 1/1.
BENCH_REPLICATION ?= 3/2
# BENCH_SECURE=1 starts the nodes with cluster credentials (peer mTLS, gossip
# encryption, admin token) instead of --insecure.
BENCH_SECURE ?=

.PHONY: bench-local
bench-local: build ## Start one imnode on 127.0.0.1 (temp data dir) and run imbench against it with BENCH_ARGS.
	NODES=1 SHARDS=$(BENCH_SHARDS) SECURE=$(BENCH_SECURE) hack/bench-local.sh $(BENCH_ARGS)

.PHONY: bench-cluster-local
bench-cluster-local: build ## Start three imnodes on 127.0.0.1 (R/W = BENCH_REPLICATION) and run imbench against all three with BENCH_ARGS.
	NODES=3 SHARDS=$(BENCH_SHARDS) REPLICATION=$(BENCH_REPLICATION) SECURE=$(BENCH_SECURE) hack/bench-local.sh $(BENCH_ARGS)

CENTRIFUGO_VERSION := v6.9.1
CENTRIFUGO := $(CACHE_DIR)/bin/centrifugo-$(CENTRIFUGO_VERSION)

$(CENTRIFUGO):
	mkdir -p $(CACHE_DIR)/bin
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION) && mv $$tmp/centrifugo $@ && rm -rf $$tmp

# BENCH_COMPARE_ENV are hack/bench-compare.sh's knobs, e.g.
# BENCH_COMPARE_ENV="SYSTEMS='imnode-1 centrifugo' STEP_DURATION=30s".
BENCH_COMPARE_ENV ?=

.PHONY: bench-compare
bench-compare: build $(CENTRIFUGO) ## Compare imnode (1 node, 3 nodes R=3/W=2) with Centrifugo v6.9.1: 1:1, room fan-out, idle memory per socket (about 10 minutes; docs/benchmarks.md).
	env CENTRIFUGO=$(CENTRIFUGO) $(BENCH_COMPARE_ENV) hack/bench-compare.sh
