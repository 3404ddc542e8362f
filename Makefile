# Quick start: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit services bench reliability clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) scripts/prune_stray_packages.py
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench demo reliability

typecheck: $(STAMP)
	$(VENV)/bin/mypy

services:
	@bash scripts/services.sh

unit: $(STAMP) services
	$(VENV)/bin/pytest

test: lint typecheck unit

# Peers side by side in one process each; prints requests/s and ratios, and writes JSON
# results under bench/results/ that bench.report turns into docs/benchmarks.md, its charts
# and README's table. Several minutes; `make bench BENCH_FLAGS=--quick` for a rough run.
BENCH_FLAGS ?=
bench: $(STAMP) services
	rm -rf bench/results
	$(PY) -m bench.keys_bench $(BENCH_FLAGS)
	$(PY) -m bench $(BENCH_FLAGS)
	$(PY) -m bench.storage_bench $(BENCH_FLAGS)
	$(PY) -m bench.redis_bench $(BENCH_FLAGS)
	$(PY) -m bench.sql_bench $(BENCH_FLAGS)
	$(PY) -m bench.flask_bench $(BENCH_FLAGS)
	$(PY) -m bench.django_bench $(BENCH_FLAGS)
	$(PY) -m bench.fastapi_bench $(BENCH_FLAGS)
	$(PY) -m bench.aiohttp_bench $(BENCH_FLAGS)
	$(PY) -m bench.ops_bench $(BENCH_FLAGS)
	$(PY) -m bench.report

# The long reliability suite (issue 9): the fuzz properties at 10,000 examples each, then
# uvicorn and gunicorn (4 workers) under load while
# private Redis, MariaDB and PostgreSQL servers are stalled (SIGSTOP) and killed (kill -9);
# checks every response's counter and writes docs/reliability.md. About 10 minutes;
# `make reliability RELIABILITY_FLAGS=--quick` for a smoke run. Installs the Debian servers
# it needs if they are missing.
RELIABILITY_FLAGS ?=
reliability: $(STAMP)
	@bash scripts/reliability_deps.sh
	HYPOTHESIS_PROFILE=websession-long $(VENV)/bin/pytest -q -p no:cacheprovider tests/test_fuzz.py
	$(PY) -m reliability $(RELIABILITY_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
