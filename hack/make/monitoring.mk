# Monitoring assets: the alerting rules (config/prometheus) checked and unit-tested with promtool.

PROMTOOL_VERSION := v0.316.0
PROMTOOL := $(CACHE_DIR)/bin/promtool-$(PROMTOOL_VERSION)

$(PROMTOOL):
	mkdir -p $(CACHE_DIR)/bin
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && mv $$tmp/promtool $@ && rm -rf $$tmp

##@ Monitoring

.PHONY: test-monitoring
test-monitoring: $(PROMTOOL) ## promtool check rules and promtool test rules on config/prometheus (promtool built into the cache).
	$(PROMTOOL) check rules config/prometheus/rules.yaml
	cd config/prometheus && $(PROMTOOL) test rules rules_test.yaml

PRE_GO_TESTS += test-monitoring
