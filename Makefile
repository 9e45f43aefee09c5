# Quick start: `make run` (set up + start the app on the bundled model), `make test` (set up + all tests),
# `make test-fast` (lint + the unit tier: no server, browser, PostgreSQL or training; under a minute).
# Setup is idempotent: .venv is (re)installed only when a requirements file or the install script changed.
PY := .venv/bin/python
# One Python everywhere (pyproject.toml, Dockerfile): 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
SHARED ?= ../shared
export TORCH_HOME ?= $(abspath $(SHARED)/weights/torch)
# The tests find ../shared through FER_SHARED (tests/conftest.py): `make test SHARED=/elsewhere` reaches them.
export FER_SHARED ?= $(abspath $(SHARED))
FAST := not slow and not browser and not postgres and not train

.PHONY: run test test-fast lint bench setup setup-dev clean

.venv/bin/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is needed, found " + sys.version)'
	$(PYTHON) -m venv .venv

.venv/.installed: .venv/bin/python requirements.txt scripts/install.sh
	PATH="$(CURDIR)/.venv/bin:$$PATH" scripts/install.sh
	touch $@

.venv/.installed-dev: .venv/.installed requirements-dev.txt
	PATH="$(CURDIR)/.venv/bin:$$PATH" scripts/install.sh --dev
	touch $@

setup: .venv/.installed
setup-dev: .venv/.installed-dev

run: setup
	$(PY) app.py

test: setup-dev
	$(PY) -m ruff check .
	$(PY) -m pytest

# The unit tier: the markers are assigned in tests/conftest.py.
test-fast: setup-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "$(FAST)"

lint: setup-dev
	$(PY) -m ruff check .

bench: setup-dev
	$(PY) benchmarks/bench_inference.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache test-artifacts
