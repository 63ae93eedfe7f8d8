# `make test` and `make demo` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)

.PHONY: install test demo lint bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

$(STAMP): pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[dev]"
	rm -f $(VENV)/.installed-airflow-*
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/run_demo.py

lint: install
	$(BIN)/ruff check airflow_provider_cml tests example_dags scripts benchmarks
	$(BIN)/ruff format --check airflow_provider_cml tests example_dags scripts benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[bench]"
	$(BIN)/python benchmarks/import_cost.py
	$(BIN)/python benchmarks/calls_per_run.py
	$(BIN)/python benchmarks/http_clients.py
	$(BIN)/python benchmarks/trigger_scale.py --triggers 1000 --poll 1
	$(BIN)/python benchmarks/trigger_scale.py --triggers 10000 --poll 30
	$(BIN)/python benchmarks/trigger_scale.py --profile

clean:
	rm -rf $(VENV) .demo .pytest_cache
