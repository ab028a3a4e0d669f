# zen-flow developer commands. Everything installs what it needs; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/zen_flow/__init__.py)
IMAGE ?= ghcr.io/kube-zen/zen-flow
PLATFORMS ?= linux/amd64,linux/arm64
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
KUBECTL ?= kubectl
OVERLAY ?=
DEPLOY_DIR := $(if $(OVERLAY),config/overlays/$(OVERLAY),config/default)
IMAGE_TAR := $(HOME)/.cache/zen-flow/image/zen-flow.tar
# make test runs hypothesis derandomized (the same cases every run, as CI must); plain `pytest` explores.
export ZENFLOW_HYPOTHESIS_PROFILE ?= ci

.PHONY: help venv install uninstall undeploy test-node controlplane check fmt lint typecheck imports test test-unit test-tools test-integration test-e2e \
        test-load test-transfer bench cluster dev run validate-examples manifests helm-lint helm-template helm-package \
        deploy image build-image-multiarch build-release coverage clean test-chaos fuzz

help:
	@grep -E '^[a-z0-9-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22

$(STAMP): pyproject.toml devkit/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . -e ./devkit
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with zen-flow and its developer tools (devkit/); every target below does it first

controlplane: ## build (or reuse) the local control-plane binaries; prints their directory
	@tools/build-controlplane.sh

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format src devkit tests tools hatch_build.py
	$(BIN)/ruff check --fix src devkit tests tools hatch_build.py

lint: $(STAMP)
	$(BIN)/ruff format --check src devkit tests tools hatch_build.py
	$(BIN)/ruff check src devkit tests tools hatch_build.py

typecheck: $(STAMP)
	$(BIN)/mypy src devkit/zen_flow_dev hatch_build.py

imports: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck imports ## format check, lint, mypy --strict, import contracts

test: $(STAMP) ## every test tier (the real-node tier beside the others); builds what they need first (cached)
	@set -e; \
	  cp="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}"; \
	  s3="$${ZENFLOW_VERSITYGW:-$$(tools/build-gotool.sh versitygw)}"; \
	  kueue="$${ZENFLOW_KUEUE:-$$(tools/build-gotool.sh kueue)}"; \
	  prom="$$(tools/fetch-prometheus.sh)"; \
	  shells="$$(tools/fetch-shells.sh)"; \
	  node="$${ZENFLOW_NODE_BIN:-$$(tools/build-node.sh --if-supported)}"; \
	  image="$${ZENFLOW_IMAGE_TAR:-$$(tools/build-image.sh --if-supported --save $(IMAGE_TAR))}"; \
	  ZENFLOW_CONTROLPLANE_BIN="$$cp" ZENFLOW_VERSITYGW="$$s3" ZENFLOW_KUEUE="$$kueue" \
	  ZENFLOW_PROMETHEUS_BIN="$$prom" ZENFLOW_SHELLS_BIN="$$shells" \
	  ZENFLOW_NODE_BIN="$$node" ZENFLOW_IMAGE_TAR="$$image" \
	  tools/test-tiers.sh $(BIN)/pytest $(PYTEST_ARGS)

test-node: $(STAMP) ## the real-node tier only (root: containerd, kubelet, kube-proxy, local registry, the image)
	@set -e; \
	  cp="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}"; \
	  node="$${ZENFLOW_NODE_BIN:-$$(tools/build-node.sh --if-supported)}"; \
	  s3="$${ZENFLOW_VERSITYGW:-$$(tools/build-gotool.sh versitygw)}"; \
	  image="$${ZENFLOW_IMAGE_TAR:-$$(tools/build-image.sh --if-supported --save $(IMAGE_TAR))}"; \
	  ZENFLOW_CONTROLPLANE_BIN="$$cp" ZENFLOW_VERSITYGW="$$s3" ZENFLOW_NODE_BIN="$$node" ZENFLOW_IMAGE_TAR="$$image" \
	  $(BIN)/pytest tests/node $(PYTEST_ARGS)

coverage: $(STAMP) ## every test tier under coverage, controller subprocesses included; report here and in htmlcov/
	rm -f .coverage .coverage.*
	COVERAGE_FILE="$(CURDIR)/.coverage" \
	  ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/coverage run -m pytest tests $(PYTEST_ARGS)
	$(BIN)/coverage combine -q && $(BIN)/coverage report && $(BIN)/coverage html -q

test-unit: $(STAMP) ## unit and property tests (hermetic: no cluster tools, no network)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-tools: $(STAMP) ## the real tools: kubectl kustomize, helm, promtool, shell completion in bash/zsh/fish (cached)
	@ZENFLOW_PROMETHEUS_BIN="$$(tools/fetch-prometheus.sh)" ZENFLOW_SHELLS_BIN="$$(tools/fetch-shells.sh)" \
	  ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/pytest tests/tools $(PYTEST_ARGS)

test-transfer: $(STAMP) ## `zen-flow artifact` as processes against a real S3 server (versitygw) and HTTP server
	@ZENFLOW_VERSITYGW="$${ZENFLOW_VERSITYGW:-$$(tools/build-gotool.sh versitygw)}" \
	  $(BIN)/pytest tests/transfer $(PYTEST_ARGS)

test-integration: $(STAMP) ## tests against a real kube-apiserver + etcd (and versitygw for the flow archive)
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  ZENFLOW_VERSITYGW="$${ZENFLOW_VERSITYGW:-$$(tools/build-gotool.sh versitygw)}" \
	  $(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) ## tests on the full local cluster (controller-manager, scheduler, kwok; Kueue for queued steps)
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  ZENFLOW_KUEUE="$${ZENFLOW_KUEUE:-$$(tools/build-gotool.sh kueue)}" \
	  $(BIN)/pytest tests/e2e $(PYTEST_ARGS)

cluster: $(STAMP) ## start the local full cluster in the foreground and print its kubeconfig path
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/zen-flow-dev cluster --profile full

dev: $(STAMP) ## local cluster + CRD + controller + the example flows, with live progress (Ctrl-C stops)
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/zen-flow-dev dev $(DEV_ARGS)

run: $(STAMP) ## run the controller against the current kubeconfig
	$(BIN)/zen-flow run $(RUN_ARGS)

validate-examples: $(STAMP) ## validate examples/, the original-forms fixtures and (when beside the checkout) the original's examples offline
	$(BIN)/zen-flow validate examples tests/fixtures/original-forms $(wildcard ../shared/examples-upstream)

bench: $(STAMP) ## benchmarks on a local kwok cluster: latency, throughput vs ideal baseline, API cost, memory (BENCH_ARGS=--preset quick|default|large)
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/zen-flow-dev bench $(BENCH_ARGS)

test-chaos: $(STAMP) ## random SIGKILLs of the controller during 100 flows x 10 steps; prints duplicates and stuck flows
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/zen-flow-dev chaos $(CHAOS_ARGS)

fuzz: $(STAMP) ## the webhook fuzz test with 20,000 generated reviews (make test runs 100, derandomized)
	ZENFLOW_HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/unit/test_webhook_fuzz.py $(PYTEST_ARGS)

test-load: $(STAMP) ## the load-test smoke (correctness only) and the quick benchmark preset
	@ZENFLOW_CONTROLPLANE_BIN="$${ZENFLOW_CONTROLPLANE_BIN:-$$(tools/build-controlplane.sh)}" \
	  $(BIN)/pytest tests/load $(PYTEST_ARGS) && $(BIN)/zen-flow-dev bench --preset quick

manifests: ## the JobFlowTemplate CRD's spec from the JobFlow CRD's, then the CRDs, alert rules and dashboard into the Helm chart (config/ is the source)
	$(BIN)/python tools/template-crd.py
	tools/sync-chart-files.sh

helm-lint: ## helm lint the chart (helm is built from its Go module and cached on first use)
	"$$(tools/build-gotool.sh helm)" lint --strict charts/zen-flow

helm-template: ## render the chart with its default values
	"$$(tools/build-gotool.sh helm)" template zen-flow charts/zen-flow -n zen-flow-system

helm-package: ## package the chart into dist/
	"$$(tools/build-gotool.sh helm)" package charts/zen-flow -d dist

install: ## install the JobFlow CRD into the current kubeconfig's cluster
	$(KUBECTL) apply --server-side -k config/crd

uninstall: ## remove the JobFlow CRD (and with it every JobFlow) from the current cluster
	$(KUBECTL) delete --ignore-not-found -k config/crd

deploy: ## CRD, RBAC, controller and webhooks into the current cluster (OVERLAY=dev|staging|production; default: config/default)
	$(KUBECTL) apply --server-side -k $(DEPLOY_DIR)

undeploy: ## remove what `make deploy` applied (what went with its namespace is not an error)
	$(KUBECTL) kustomize $(DEPLOY_DIR) | $(KUBECTL) delete --ignore-not-found --wait=false -f -

image: $(STAMP) ## build the controller image from the Containerfile with podman, offline (tools/build-image.sh; BASE_IMAGE to choose the base)
	IMAGE=$(IMAGE):$(VERSION) tools/build-image.sh

build-image-multiarch: ## one image for PLATFORMS (default linux/amd64,linux/arm64); checks every dependency has wheels for them first; needs podman
	tools/check-platform-wheels.sh $(PLATFORMS)
	podman build --platform $(PLATFORMS) --manifest $(IMAGE):$(VERSION) -f Containerfile .

build-release: $(STAMP) ## wheel, sdist and packaged Helm chart in dist/, with SHA256SUMS
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	"$$(tools/build-gotool.sh helm)" package charts/zen-flow -d dist
	cd dist && sha256sum -- * > SHA256SUMS
	@ls -l dist

clean: ## remove the virtualenv and caches (not the control-plane binaries; see docs/TESTING.md)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
