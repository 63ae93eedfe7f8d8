# `make test` and `make demo` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)

.PHONY: install test demo lint clean

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
	$(BIN)/ruff check airflow_provider_cml tests example_dags scripts
	$(BIN)/ruff format --check airflow_provider_cml tests example_dags scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache
