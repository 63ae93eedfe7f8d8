# `make test` and `make demo` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-airflow-$(AIRFLOW_VERSION)
# A public client of the real API that no one here wrote, in a virtualenv of its own (its
# dependencies are not Airflow's): tests/system/test_third_party_clients.py drives the workbench with it.
MCP_VENV := .venv-mcp
MCP_VERSION := 0.2.13
MCP_STAMP := $(MCP_VENV)/.installed-cai-mcp-server-$(MCP_VERSION)

.PHONY: install test test-unit demo lint bench docs dist clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade uv

$(STAMP): pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[dev]"
	rm -f $(VENV)/.installed-airflow-*
	touch $(STAMP)

install: $(STAMP)

$(MCP_STAMP): $(BIN)/uv
	$(BIN)/uv venv --quiet --allow-existing --python $(PYTHON) $(MCP_VENV)
	$(BIN)/uv pip install --quiet --python $(MCP_VENV)/bin/python "cai-mcp-server==$(MCP_VERSION)"
	touch $(MCP_STAMP)

# Two workers, each taking whole test files in collection order (tests/conftest.py puts the two
# minute-long files first, so the workers end together); PYTEST_WORKERS=0 runs in one process. The
# real-services tests (a whole Airflow deployment, timing-sensitive like a real one) run after them, alone.
PYTEST_WORKERS ?= 2

test: install $(MCP_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not real_services" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -p no:xdist -m real_services $(PYTEST_ARGS)

# The unit tests only (all but tests/system, the real-Airflow runs): CI's pass on Airflow 2.11.
test-unit: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not real_services" --ignore=tests/system $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/run_demo.py

lint: install
	$(BIN)/ruff check airflow_provider_cml tests example_dags scripts benchmarks docs/conf.py
	$(BIN)/ruff format --check airflow_provider_cml tests example_dags scripts benchmarks docs/conf.py
	$(BIN)/mypy

bench: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[bench]"
	$(BIN)/python benchmarks/import_cost.py
	$(BIN)/python benchmarks/calls_per_run.py
	$(BIN)/python benchmarks/loop_stall.py
	$(BIN)/python benchmarks/trigger_scale.py --triggers 1000 --poll 1
	$(BIN)/python benchmarks/trigger_scale.py --triggers 10000 --poll 30
	$(BIN)/python benchmarks/trigger_scale.py --profile

# The Sphinx site, warnings as errors. autodoc imports the package, and so Airflow: the docs extra
# goes into the project's own virtualenv.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# A checked release: sdist and wheel in dist/, checked as PyPI reads them (twine, absolute links,
# an Unreleased section in CHANGELOG.md), then the wheel installed in clean virtualenvs on the oldest
# and newest Airflow supported, each running a DAG against the local workbench.
DIST_AIRFLOW_VERSIONS ?= 2.10.5 3.3.2
RELEASE_STAMP := $(VENV)/.installed-release

$(RELEASE_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[release]"
	touch $(RELEASE_STAMP)

dist: $(RELEASE_STAMP)
	rm -rf dist
	$(BIN)/python -m build --quiet --installer uv --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py --airflow $(DIST_AIRFLOW_VERSIONS)

clean:
	rm -rf $(VENV) $(MCP_VENV) .demo .pytest_cache dist docs/_build
