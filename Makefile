# quotestream — the two commands first:
#   make run    the main job locally, no cluster, no external services
#   make test   everything CI checks (installs/starts what the tests need by itself)

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= auto

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

SOURCE ?= synthetic

# With DATABASE_URL set, the store (quotestream-store) runs on it and the shards post to it.
WITH_STORE := $(if $(DATABASE_URL),scripts/with-store.sh,)

.PHONY: run
run: ## Stream the example S&P 500 QuoteStream locally (4 shards; SOURCE=yahoo-stream|alpaca|polygon streams from a local vendor server; REDIS_URL, STORAGE_URL optional; DATABASE_URL also starts the store)
ifeq ($(SOURCE),synthetic)
	$(WITH_STORE) $(CARGO) run --release -q -p quotestream-worker -- local $(ARGS)
else
	@$(WITH_STORE) scripts/run-streaming.sh $(SOURCE) $(ARGS)
endif

.PHONY: test
test: deps controlplane-node fmt-check clippy dockerfile-check images-test ## Format and lint checks, the image checks, then every test (unit, property, integration, control plane, real node), then bench-quick
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	tests/controlplane/smoke.sh
	$(MAKE) --no-print-directory test-node
	@# The benchmark harnesses on the debug build the tests just made: not for numbers, so
	@# that they cannot rot (docs/benchmarks.md is not touched).
	$(MAKE) --no-print-directory bench-quick BENCH_PROFILE=debug

.PHONY: test-unit
test-unit: ## The fast inner loop: the unit and property tests beside the code (no apt, no Go build, no servers)
	$(CARGO) test --workspace --lib --bins

.PHONY: deps
deps: ## Install the Debian packages the tests need (redis-server, postgresql) when missing
	@scripts/ensure-deps.sh

# The Go build runs before the Rust build on purpose: on 2 cores, building both at once takes
# about three times as long (docs/controlplane.md).
.PHONY: controlplane
controlplane: ## Build (or reuse) the local Kubernetes control plane, kubectl and helm (.cache/controlplane/bin)
	@tests/controlplane/build.sh

.PHONY: controlplane-node
controlplane-node: ## Also build the real node's kubelet, kube-scheduler and kube-controller-manager
	@tests/controlplane/build.sh --node

NODE ?=
.PHONY: cluster-up
cluster-up: ## Start a local kube-apiserver + etcd to play with; NODE=1: a real node too (kubelet, containerd), in its own network namespace
ifeq ($(NODE),1)
	@$(MAKE) --no-print-directory deps controlplane-node
	@tests/node/node-up.sh
else
	@$(MAKE) --no-print-directory controlplane
	@tests/controlplane/cluster-up.sh
endif

.PHONY: cluster-down
cluster-down: ## Stop what cluster-up started (the control plane, or the whole node with NODE=1)
	@if [ -d .cache/node ]; then tests/node/node-down.sh; fi
	@if [ -f .cache/cluster/pid ]; then tests/controlplane/cluster-down.sh; fi

.PHONY: test-node
test-node: deps controlplane-node ## The end-to-end test on a real node: images, helm install, 503 tickers, reshard 3→8→3, failover, upgrade, uninstall; then make demo's script
	tests/node/e2e.sh
	tests/node/demo-check.sh

.PHONY: demo
demo: deps controlplane-node images ## The chart on a real node with real containers, streaming the S&P 500 example; prints how to watch
	@tests/node/demo.sh

.PHONY: fmt-check
fmt-check: ## cargo fmt --check (skipped with a note when rustfmt is not installed)
	@if $(CARGO) fmt --version >/dev/null 2>&1; then \
		$(CARGO) fmt --all -- --check; \
	else echo "rustfmt is not installed on this machine: skipping the format check"; fi

.PHONY: clippy
clippy: ## cargo clippy -D warnings (skipped with a note when clippy is not installed)
	@if $(CARGO) clippy --version >/dev/null 2>&1; then \
		$(CARGO) clippy --workspace --all-targets -- -D warnings; \
	else echo "clippy is not installed on this machine: skipping the lint step"; fi

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: crd
crd: ## Regenerate crds/quotestream.yaml (and the chart's copy) from the Rust types
	$(CARGO) run -q -p quotestream-operator -- crd > crds/quotestream.yaml
	cp crds/quotestream.yaml charts/quotestream/crds/quotestream.yaml

.PHONY: sharding-report
sharding-report: ## Measure the shard assignment and rewrite docs/sharding.md
	$(CARGO) run --release -q -p quotestream-api --example sharding_report > docs/sharding.md

.PHONY: bench
bench: deps ## Run the benchmarks (release build, own throwaway servers) and write docs/benchmarks.md
	scripts/bench.sh

BENCH_PROFILE ?= release
.PHONY: bench-quick
bench-quick: deps ## Every benchmark row in a few seconds; report to a temp file (docs/benchmarks.md untouched)
	BENCH_PROFILE=$(BENCH_PROFILE) scripts/bench.sh --quick

.PHONY: build
build: ## Release build of the binaries (operator, worker, store)
	$(CARGO) build --release -p quotestream-operator -p quotestream-worker -p quotestream-store

# Container images (docs/images.md). The repository defaults to the one the chart's values
# name, so `helm install` finds what `make images` imported; the tag defaults to the workspace
# version, which a test keeps equal to the chart's appVersion.
IMAGE_BINARIES ?= quotestream-operator quotestream-worker quotestream-store
IMAGE_REPO ?= $(shell sed -nE 's|^ *repository: (.*)/quotestream-operator$$|\1|p' charts/quotestream/values.yaml)
IMAGE_TAG ?=
IMAGES_DIR ?= $(or $(CARGO_TARGET_DIR),target)/images

.PHONY: images
images: ## Release-build IMAGE_BINARIES and pack each into target/images/<binary>.oci.tar (OCI layout, FROM scratch, no Docker; IMAGE_REPO, IMAGE_TAG)
	$(CARGO) build --release --locked $(addprefix -p ,$(IMAGE_BINARIES))
	IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) IMAGES_DIR=$(IMAGES_DIR) scripts/build-images.sh $(IMAGE_BINARIES)

.PHONY: images-check
images-check: images ## make images, then import them into a private containerd and run each with --version (root, containerd)
	scripts/oci-import-check.sh --run-args --version $(foreach b,$(IMAGE_BINARIES),$(IMAGES_DIR)/$(b).oci.tar)

.PHONY: images-test
images-test: ## The image packer: same input gives the same digest, chart tag = workspace version, containerd import + run as nonroot
	@scripts/test-images.sh

.PHONY: dockerfile-check
dockerfile-check: ## cargo check from exactly the Dockerfile's COPY lines (a missing crate or file fails), one stage per IMAGE_BINARIES
	@scripts/check-dockerfile-context.sh $(IMAGE_BINARIES)
