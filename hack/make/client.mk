##@ Client and load tool

.PHONY: imbench
imbench: ## Build the imbench load tool into ./bin.
	$(GO) build -o $(BIN_DIR)/imbench ./node/cmd/imbench
