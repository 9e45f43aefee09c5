# Quick start: `make run` (set up + start the app on the bundled model), `make test` (set up + all tests).
# Setup is idempotent: .venv is (re)installed only when a requirements file or the install script changed.
PY := .venv/bin/python
SHARED ?= ../shared
export TORCH_HOME ?= $(abspath $(SHARED)/weights/torch)

.PHONY: run test lint bench setup setup-dev clean

.venv/bin/python:
	python3 -m venv .venv

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

lint: setup-dev
	$(PY) -m ruff check .

bench: setup-dev
	$(PY) benchmarks/bench_inference.py

clean:
	rm -rf .venv .pytest_cache .ruff_cache test-artifacts
