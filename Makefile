# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv when missing and install what is needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is taken when this exact version is asked for first (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# Exact versions of everything else, made by `make lock` from pyproject.toml's ranges (see README):
# requirements.lock (the API, the nightly job, FAISS for the CPU, dev tools: what make run/test
# install); for production hosts and images the same pins without the dev tools,
# requirements-nightly.lock, or also without the nightly's packages, requirements-serve.lock (an
# API-only host); requirements-build.lock (what sdists build with).
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
LOCK := requirements.lock
NIGHTLY_LOCK := requirements-nightly.lock
SERVE_LOCK := requirements-serve.lock
BUILD_LOCK := requirements-build.lock
# The extras `make run` and `make test` need (cpu and gpu are alternatives: one FAISS wheel each;
# ray: the tests run the Ray backend on a local cluster).
LOCK_EXTRAS := --extra nightly --extra cpu --extra dev --extra ray
NIGHTLY_EXTRAS := --extra nightly --extra cpu
SERVE_EXTRAS := --extra cpu
# The platform the lock is resolved for: the one CI and `make test` run on.
LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28
# The CPU build of torch: this project's machines keep it in /opt/wheels; elsewhere PyTorch's index.
TORCH_WHEELS ?= $(if $(wildcard /opt/wheels/torch-*),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
# `make lock LOCK_UPGRADE=--upgrade` moves every pin to the newest release within the ranges.
LOCK_UPGRADE ?=
DATA ?= data/sample
CONFIG ?= configs/sample.toml
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test lint sample clean-state install lock

install: $(STAMP)

# torch first and exactly (TORCH_SPEC picks the build); then the lock, then this project without
# resolving anything; pip check fails the install if the lock and pyproject.toml disagree.
$(STAMP): pyproject.toml $(LOCK) $(BUILD_LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --build-constraint $(BUILD_LOCK) -r $(LOCK)
	$(PY) -m pip uninstall --quiet --yes recsys  # this project's old distribution name, if installed
	$(PY) -m pip install --quiet --build-constraint $(BUILD_LOCK) --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# Refresh the lock files from pyproject.toml (keeps current pins unless LOCK_UPGRADE=--upgrade).
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	$(VENV)/bin/uv pip compile --quiet pyproject.toml $(LOCK_EXTRAS) $(LOCK_PLATFORM) $(LOCK_UPGRADE) \
		$(TORCH_WHEELS) --constraint $(VENV)/torch-constraint.txt --no-emit-package torch \
		--custom-compile-command "make lock" --output-file $(LOCK)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml $(NIGHTLY_EXTRAS) $(LOCK_PLATFORM) \
		$(TORCH_WHEELS) --constraint $(VENV)/torch-constraint.txt --no-emit-package torch \
		--constraint $(LOCK) --custom-compile-command "make lock" --output-file $(NIGHTLY_LOCK)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml $(SERVE_EXTRAS) $(LOCK_PLATFORM) \
		$(TORCH_WHEELS) --constraint $(VENV)/torch-constraint.txt --no-emit-package torch \
		--constraint $(LOCK) --custom-compile-command "make lock" --output-file $(SERVE_LOCK)
	$(VENV)/bin/uv pip compile --quiet requirements-build.in $(LOCK_PLATFORM) $(LOCK_UPGRADE) \
		--custom-compile-command "make lock" --output-file $(BUILD_LOCK)

run: $(STAMP)
	$(VENV)/bin/recsys nightly --data $(DATA) --config $(CONFIG)
	$(VENV)/bin/recsys serve

test: $(STAMP)
	bash tests/system_deps.sh
	$(PY) -m pytest -q --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check recsys jobs serving tests benchmarks
	$(VENV)/bin/ruff format --check recsys jobs serving tests benchmarks

sample: $(STAMP)
	$(PY) -m recsys.data.sample --out data/sample --seed 0

clean-state:
	rm -rf var mlflow/mlflow.db mlflow/artifacts
