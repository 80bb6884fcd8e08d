PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= config/fleetd.yaml
BIN     = $(VENV)/bin

.PHONY: run test lint typecheck check bench install clean

$(BIN)/fleetd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/fleetd
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/fleetd
	$(BIN)/fleetd run --config $(CONFIG)

test: $(VENV)/.test-extras
	$(BIN)/ruff check fleetd tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-extras
	$(BIN)/ruff check fleetd tests bench

typecheck: $(VENV)/.test-extras
	$(BIN)/mypy

$(VENV)/.bench-extras: $(VENV)/.test-extras
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-extras
	$(BIN)/python -m bench.fleet_bench

install:
	sudo bash deploy/install.sh

clean:
	rm -rf $(VENV) build *.egg-info
