# Weft — make targets. `make` alone lists them.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
# Privileged tests fail instead of skipping when this is 1 (CI sets it).
WEFT_REQUIRE_PRIVILEGED ?= 0
export WEFT_REQUIRE_PRIVILEGED

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install Debian packages and build the control plane, CoreDNS and fortio (cached)
	@./test/bootstrap.sh

.PHONY: generate
generate: ## regenerate eBPF objects (bpf2go) and other generated code
	$(GO) generate ./...

.PHONY: generate-check
generate-check: ## regenerate and fail if that changes any file (run on a clean checkout, as CI does)
	@state() { git status --porcelain=v1 --untracked-files=all; git diff | sha256sum; }; \
	before=$$(state); $(MAKE) --no-print-directory generate >/dev/null; after=$$(state); \
	if [ "$$before" != "$$after" ]; then git status --short; echo "generated files are stale: run make generate and commit" >&2; exit 1; fi

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/... ./test/apps/echo ./test/apps/client ./test/apps/bulk ./test/harness/cmd/... ./test/bench/cmd/...

.PHONY: test
test: deps generate-check build ## check generated code, then run every test, privileged harness tests included (needs root)
	$(GO) test -count=1 -timeout 25m ./...

.PHONY: test-unit
test-unit: ## run the tests that need no root and no cluster
	$(GO) test -short -count=1 ./...

.PHONY: demo
demo: deps build ## run the demo cluster with the sample app (KEEP=1 keeps it up; make demo-down ends it)
	@$(BIN)/weft-harness demo $(if $(KEEP),-keep)

.PHONY: demo-down
demo-down: ## stop a cluster kept up by make demo KEEP=1
	@$(BIN)/weft-harness down

.PHONY: bench
bench: deps build ## run the benchmarks (control plane first, so the data-path report includes it) into bench-results/ (QUICK=1 for a short run)
	@status=0; \
	$(BIN)/weft-scale $(if $(QUICK),-quick -changes 4,-changes 10) -out bench-results || status=$$?; \
	$(BIN)/weft-bench $(if $(QUICK),-quick) -out bench-results || status=$$?; \
	exit $$status

.PHONY: bench-scale
bench-scale: deps build ## only the controller scale benchmark (QUICK=1: 20 agents, 1,000 pods)
	@$(BIN)/weft-scale $(if $(QUICK),-quick) -out bench-results

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

.PHONY: clean-harness
clean-harness: ## remove namespaces, cgroups, pins and processes left by crashed harness runs
	$(GO) run ./test/harness/cmd/weft-harness clean
