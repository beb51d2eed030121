# fareflow — run `make` (or `make help`) for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
ROWS ?= 200000
RUN_ARGS ?=
# fareflow run keeps the newest KEEP_RUNS runs under runs/ (0 keeps all).
KEEP_RUNS ?= 20
PYTEST_ARGS ?=
BENCH_ROWS ?= 2000000
BENCH_ARGS ?=
BENCH_BASELINE_VENV ?= .venv-bench-baseline
BENCH_BASELINE_PANDAS ?= 3.1.1
# The peers make bench runs fareflow next to (in .venv-bench-baseline).
BENCH_BASELINE_POLARS ?= 2.1.0
BENCH_BASELINE_DUCKDB ?= 2.0.0
SCALE_ROWS ?= 67400000
SCALE_ARGS ?=
# checkov pins many packages of its own: it lives in a venv of its own, shared by the
# manifest policy scan (manifests/cluster.mk) and the Dockerfile scan (images/images.mk).
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION ?= 3.3.30
# The MLflow UI's venv (make mlflow-ui); the version is the project's mlflow-skinny pin.
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_VERSION ?= 3.17.2
MLFLOW_UI_PORT ?= 5000

.PHONY: help install horovod run test lint format bench bench-scale compile clean checkov-venv mlflow-venv mlflow-ui

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-24s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,train,serve,track]'
	touch $@

install: $(BIN)/.installed ## create the venv (VENV, default .venv) and install fareflow with its dev extras

# Horovod in the venv, for --backend horovod: built once against the pinned torch by the script
# the trainer image uses, the wheel cached under HOROVOD_WHEELS (cold: about 2 minutes gloo only,
# 5.5 with MPI on 2 loaded cores). With MPI too where Open MPI's compiler is installed (.ci/run
# installs it): the controller an MPIJob runs, and locally the faster one (docs/train.md).
HOROVOD_VERSION ?= 0.28.1
HOROVOD_WHEELS ?= $(HOME)/.cache/fareflow/horovod-wheels
HOROVOD_WITH_MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
HOROVOD_FLAVOUR := $(if $(filter 1,$(HOROVOD_WITH_MPI)),mpi-gloo,gloo)
TORCH_PIN := $(shell sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' pyproject.toml)
HOROVOD_WHEEL_DIR := $(HOROVOD_WHEELS)/$(HOROVOD_VERSION)-torch$(TORCH_PIN)-cp311-$(HOROVOD_FLAVOUR)
HOROVOD_STAMP := $(BIN)/.horovod-$(HOROVOD_VERSION)-$(TORCH_PIN)-$(HOROVOD_FLAVOUR)

$(HOROVOD_STAMP): $(BIN)/.installed images/trainer/build-horovod.sh
	ls $(HOROVOD_WHEEL_DIR)/horovod-$(HOROVOD_VERSION)-*.whl >/dev/null 2>&1 \
	  || HOROVOD_WITH_MPI=$(HOROVOD_WITH_MPI) PYTHON=$(BIN)/python bash images/trainer/build-horovod.sh $(HOROVOD_VERSION) $(HOROVOD_WHEEL_DIR)
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(HOROVOD_WHEEL_DIR)/horovod-$(HOROVOD_VERSION)-*.whl
	$(BIN)/horovodrun --check-build | grep '\[X\] PyTorch' >/dev/null
	[ "$(HOROVOD_WITH_MPI)" != 1 ] || $(BIN)/horovodrun --check-build | grep '\[X\] MPI' >/dev/null
	rm -f $(BIN)/.horovod-*; touch $@

horovod: $(HOROVOD_STAMP) ## build (once; cached) and install Horovod into the venv (gloo, and MPI where mpicc is installed), for --backend horovod

run: install ## generate ROWS trip rows and run the whole pipeline locally (kfp.local); keeps the newest KEEP_RUNS runs under runs/
	$(BIN)/fareflow run --rows $(ROWS) --keep-runs $(KEEP_RUNS) $(RUN_ARGS)

test: install horovod ## run the unit, component and local-pipeline tests
	$(BIN)/pytest -m "not container and not k8s" $(PYTEST_ARGS)

# For development: no slow tests, one pytest-xdist worker per core, one torch/BLAS thread each
# (so the workers do not oversubscribe the cores); make test stays the full run.
.PHONY: test-fast
test-fast: install ## the tests without the slow ones, in parallel (pytest -n auto), for development
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  $(BIN)/pytest -m "not slow and not container and not k8s" -n auto $(PYTEST_ARGS)

lint: install ## ruff lint + format check + the import layering (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install ## ruff autofix + format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

compile: install ## write the pipeline IR YAML to build/taxi_fare_pipeline.yaml
	$(BIN)/fareflow compile --output build/taxi_fare_pipeline.yaml

bench: install horovod $(BENCH_BASELINE_VENV)/.installed-$(BENCH_BASELINE_PANDAS)-$(BENCH_BASELINE_POLARS)-$(BENCH_BASELINE_DUCKDB) ## benchmark fareflow vs plain baselines (BENCH_ROWS rows); JSON in bench/results/
	$(BIN)/python -m bench.run --rows $(BENCH_ROWS) --baseline-python $(BENCH_BASELINE_VENV)/bin/python $(BENCH_ARGS)

bench-scale: install ## the whole DC-sized set (SCALE_ROWS rows, 54 monthly files in yearly zips) through ingest -> quality -> sample -> train; per-step figures in bench/results/scale-*.json
	$(BIN)/python -m bench.bench_scale --rows $(SCALE_ROWS) $(SCALE_ARGS)

# The peers run with the fastest pandas (3.x; the project pins 2.3 for kserve), polars, DuckDB.
$(BENCH_BASELINE_VENV)/.installed-$(BENCH_BASELINE_PANDAS)-$(BENCH_BASELINE_POLARS)-$(BENCH_BASELINE_DUCKDB):
	$(PYTHON) -m venv $(BENCH_BASELINE_VENV)
	$(BENCH_BASELINE_VENV)/bin/pip install --quiet pandas==$(BENCH_BASELINE_PANDAS) pyarrow==26.0.1 numpy==2.4.6 \
	  polars==$(BENCH_BASELINE_POLARS) duckdb==$(BENCH_BASELINE_DUCKDB)
	touch $@

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

checkov-venv: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) ## install checkov (CHECKOV_VERSION) into its own venv

# The MLflow UI: full mlflow needs pyarrow<26, so it lives in a venv of its own; it reads the
# SQLite store fareflow run's client (mlflow-skinny, the same version) writes under runs/.
$(MLFLOW_VENV)/.installed-$(MLFLOW_VERSION):
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --quiet mlflow==$(MLFLOW_VERSION)
	touch $@

mlflow-venv: $(MLFLOW_VENV)/.installed-$(MLFLOW_VERSION) ## install the full mlflow (MLFLOW_VERSION) for the UI into its own venv

mlflow-ui: mlflow-venv ## the MLflow UI over the runs fareflow run logged (runs/mlflow.db) on MLFLOW_UI_PORT
	$(MLFLOW_VENV)/bin/mlflow ui --backend-store-uri sqlite:///runs/mlflow.db --port $(MLFLOW_UI_PORT)

clean: ## remove local run outputs and caches (keeps the venvs)
	rm -rf runs local_outputs build .pytest_cache .ruff_cache

include manifests/cluster.mk
include images/images.mk
include manifests/k8s-tier/tier.mk
