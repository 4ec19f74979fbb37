# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create .venv when missing and install what is needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is taken when this exact version is asked for first (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DATA ?= data/sample
CONFIG ?= configs/sample.toml
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test lint sample clean-state install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/recsys nightly --data $(DATA) --config $(CONFIG)
	$(VENV)/bin/recsys serve

test: $(STAMP)
	bash tests/system_deps.sh
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check recsys jobs serving tests benchmarks
	$(VENV)/bin/ruff format --check recsys jobs serving tests benchmarks

sample: $(STAMP)
	$(PY) -m recsys.data.sample --out data/sample --seed 0

clean-state:
	rm -rf var mlflow/mlflow.db mlflow/artifacts
