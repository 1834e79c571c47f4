# adaptive-lr: every target sets the environment up on first use (uv + uv.lock -> .venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced
SCALE_STAMP := $(VENV)/.synced-scale
EXP ?= demo
JOBS ?= 1
HOST ?= 127.0.0.1
TB_PORT ?= 6006
MLFLOW_PORT ?= 5000
WATCH_PORT ?= 5006
PYTEST_ARGS ?=

.PHONY: help setup demo test test-slow ui-deps experiment report tensorboard mlflow-ui bench lint study study-save study-report watch

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

# the `scale` group (Ray, for `--engine ray`) on top: the slow tests run a grid on a local Ray instance
$(SCALE_STAMP): $(STAMP)
	$(UV) sync --frozen --group scale --python $(PYTHON)
	@touch $@

setup: $(STAMP)  ## create .venv from uv.lock (torch, Lightning, MLflow, ...)

demo: $(STAMP)  ## run the embedded comparison (digits + XOR x 4 schedulers x 3 seeds) and write its report
	$(BIN)/adaptive-lr experiment demo --report

test: $(STAMP)  ## run the fast test suite (no network, no ../shared)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-slow: $(SCALE_STAMP)  ## run only the slow tests (multi-process, Ray, browser; installs the `scale` group)
	$(BIN)/pytest -q -m slow $(PYTEST_ARGS)

ui-deps:  ## Debian's chromium + chromium-driver for the browser test of the UIs (in make test-slow)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

experiment: $(STAMP)  ## run a grid and report it: make experiment EXP=demo JOBS=2 (finished cells are skipped)
	$(BIN)/adaptive-lr experiment $(EXP) --jobs $(JOBS) --report

report: $(STAMP)  ## write reports/<EXP>/<timestamp>/report.md from the logged runs: make report EXP=demo
	$(BIN)/adaptive-lr report $(EXP)

# The main study (issue 14): per part (task family) a tuned grid (LR sweep on validation, then the best point x 5
# seeds) and an untuned one (the plan's lr 0.01). A finished part's report and bundle land in reports/<grid>/; the
# bundles of parts still running are saved by `make study-save` into partial/ (commit them before a session
# ends) and imported by the next `make study`, on any machine, so the study continues where it stopped.
STUDY_PARTS ?= mnist fashion-mnist electricity imdb cifar10
STUDY_GRIDS = $(foreach p,$(STUDY_PARTS),study-$(p) study-$(p)-untuned)
STUDY_JOBS ?= 2
PARTIAL := partial
STUDY_BUNDLES = $(foreach g,$(STUDY_GRIDS),$(lastword $(sort $(wildcard reports/$(g)/*/bundle))))
# the budget check: one family's tuned track again at 3x the epochs (never merged into the study report), ranked
# against the quick budget by `adaptive-lr rank-check`
BUDGET_CHECK ?= electricity
latest_bundle = $(lastword $(sort $(wildcard reports/$(1)/*/bundle)))

study: $(STAMP)  ## run the main study, resuming (needs ADAPTIVE_LR_DATA_DIR); then make study-report
	@for b in $(sort $(wildcard $(PARTIAL)/*/*/bundle)) $(STUDY_BUNDLES); do $(BIN)/adaptive-lr import $$b || exit 1; done
	@for g in $(STUDY_GRIDS) study-$(BUDGET_CHECK)-long; do \
		$(BIN)/adaptive-lr experiment $$g paths.reports=$(CURDIR)/reports --jobs $(STUDY_JOBS) --report-changed || exit 1; \
	done
	$(MAKE) study-report

study-save: $(STAMP)  ## save the bundles of study grids still running into partial/ (commit them)
	@for g in $(STUDY_GRIDS) study-$(BUDGET_CHECK)-long; do \
		$(BIN)/adaptive-lr report $$g paths.reports=$(CURDIR)/$(PARTIAL) --bundle-only --unless-reported reports \
			2>/dev/null || true; \
	done

study-report: $(STAMP)  ## rebuild the study report from the committed bundles alone (no store, no training)
	$(BIN)/adaptive-lr report paths.reports=$(CURDIR)/reports --title study $(foreach b,$(STUDY_BUNDLES),--from $(b))
	@if [ -n "$(call latest_bundle,study-$(BUDGET_CHECK)-long)" ]; then \
		$(BIN)/adaptive-lr rank-check $(call latest_bundle,study-$(BUDGET_CHECK)) \
			$(call latest_bundle,study-$(BUDGET_CHECK)-long) paths.reports=$(CURDIR)/reports --title study-budget-check; \
	else echo "no study-$(BUDGET_CHECK)-long bundle yet: budget check skipped"; fi

# Issue 15: the bar (per family, each controller untuned vs tuned cosine, good-region width, vs open-loop wsd) and
# the feedback_wsd/wsd ablation, from the same committed study bundles; and the meta-trained RL controllers'
# leave-one-family-out transfer (resumable: rerun the same command to continue).
.PHONY: meta-transfer

META_CONTROLLERS ?= rl_qlearning rl_bandit
META_ARGS ?=
meta-transfer: $(STAMP)  ## meta-train the RL controllers leave-one-family-out and report transfer vs scratch
	@for c in $(META_CONTROLLERS); do \
		$(BIN)/adaptive-lr meta-train meta/controller=$$c $(META_ARGS) reports=$(CURDIR)/reports --leave-one-out || exit 1; \
	done

HOME_DIR = $(or $(ADAPTIVE_LR_HOME),$(CURDIR))

tensorboard: $(STAMP)  ## serve TensorBoard on localhost, runs named <experiment>/<task>/<scheduler>/seed<N>
	@$(BIN)/python -m adaptive_lr.tracking.tb_names $(HOME_DIR)/runs $(HOME_DIR)/tensorboard
	$(BIN)/tensorboard --logdir $(HOME_DIR)/tensorboard --host $(HOST) --port $(TB_PORT)

mlflow-ui: $(STAMP)  ## serve the MLflow UI over the store ($$MLFLOW_TRACKING_URI or mlruns/mlflow.db) on localhost
	mkdir -p $(HOME_DIR)/mlruns
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(HOME_DIR)/mlruns/mlflow.db} --host $(HOST) --port $(MLFLOW_PORT) --workers 1

watch: $(STAMP)  ## live page of a run (or RUN2 beside it) with LR controls: make watch RUN=<run folder or ID> [RUN2=...]
	@test -n "$(RUN)" || { echo "error: make watch needs RUN=<run folder or MLflow run ID>" >&2; exit 2; }
	$(BIN)/adaptive-lr watch $(RUN) $(RUN2) --host $(HOST) --port $(WATCH_PORT)

lint: $(STAMP)  ## ruff over src, tests and benchmarks
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)  ## throughput (real-task rows need ADAPTIVE_LR_DATA_DIR), callback and view overhead, LR control, cold start; writes benchmarks/*.md + results.json
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/controller_overhead.py
	$(BIN)/python benchmarks/lr_control.py
	$(BIN)/python benchmarks/viz_overhead.py
	$(BIN)/python benchmarks/cold_start.py

# A multi-node cluster on this machine (issue 19; src/adaptive_lr/cluster.py): an MLflow tracking server (SQLite,
# artifacts served by the server) and a Ray head + CLUSTER_WORKERS worker nodes of CLUSTER_CPUS CPUs each, joined on
# 127.0.0.1, every process in its own process group; state, logs, store and artifacts in CLUSTER_DIR.
CLUSTER_DIR ?= $(HOME_DIR)/mlruns/cluster
CLUSTER_WORKERS ?= 1
CLUSTER_CPUS ?= 1
.PHONY: cluster-up cluster-experiment cluster-down

cluster-up: $(SCALE_STAMP)  ## start an MLflow server + Ray head and worker node(s) on 127.0.0.1 [CLUSTER_WORKERS=1 CLUSTER_CPUS=1]
	$(BIN)/python -m adaptive_lr.cluster up --folder $(CLUSTER_DIR) --workers $(CLUSTER_WORKERS) --cpus $(CLUSTER_CPUS)

cluster-experiment: $(SCALE_STAMP)  ## run a grid on the cluster-up cluster, stored on its server: make cluster-experiment EXP=demo
	set -a && . $(CLUSTER_DIR)/cluster.env && set +a && \
		$(BIN)/adaptive-lr experiment $(EXP) --engine ray --address $$ADAPTIVE_LR_RAY_ADDRESS --report

cluster-down: $(STAMP)  ## stop every process cluster-up started (SIGTERM, then SIGKILL, by process group)
	$(BIN)/python -m adaptive_lr.cluster down --folder $(CLUSTER_DIR)
