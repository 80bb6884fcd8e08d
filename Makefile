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
	FLEETD_TEST_LOOP=uvloop $(BIN)/pytest -q $(UVLOOP_TESTS)

# What talks to daemons and serves clients over raw transports, once more on uvloop (FLEETD_EVENT_LOOP=uvloop)
UVLOOP_TESTS = tests/unit/test_raw_events.py tests/unit/test_pinger.py tests/unit/test_watch.py \
	tests/unit/test_watch_start.py tests/unit/test_safety_net.py tests/unit/test_client_keepalive.py \
	tests/unit/test_client_tls_shutdown.py tests/unit/test_poll_reuse.py tests/unit/test_poller.py \
	tests/unit/test_listener.py tests/unit/test_sse.py tests/unit/test_events_client.py \
	tests/unit/test_hostile_engine.py tests/unit/test_logs_follow.py tests/unit/test_uvloop_live.py

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
