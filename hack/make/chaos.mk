##@ Chaos (test/chaos)

# CHAOS_DURATION is how long `make chaos` keeps injecting random faults after
# the fixed kill, partition, join and drain. CHAOS_TIMEOUT bounds the whole
# go test run (cluster start, the last fault, settling, verification); Go
# adds repeated units up, so "10m30m" means 40 minutes. CHAOS_SEED replays
# the choices of a run (its summary prints the seed).
CHAOS_DURATION ?= 10m
CHAOS_TIMEOUT ?= $(CHAOS_DURATION)30m
CHAOS_SEED ?=

.PHONY: chaos
chaos: ## Long chaos run: random faults for CHAOS_DURATION (default 10m) under load, then a summary; fails on any lost message or client-visible error from coordinator loss.
	$(GO) test ./test/chaos -run '^TestChaos$$' -count=1 -v -timeout $(CHAOS_TIMEOUT) \
		-args -chaos.duration=$(CHAOS_DURATION) $(if $(CHAOS_SEED),-chaos.seed=$(CHAOS_SEED))
