# Two commands on a fresh machine: `make demo` (month close on local emulators) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV := .dev

.PHONY: setup test lint typecheck demo serve bench clean
.DEFAULT_GOAL := test

# Extra prerequisites of `make test`, appended by the included fragments (e.g. the checkov venv).
TEST_DEPS :=

-include mk/*.mk

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## setup: create .venv and install the pinned requirements (runtime + dev)
setup: $(STAMP)
	@command -v gcloud >/dev/null || { echo "gcloud (with the cloud-firestore-emulator component) is required"; exit 1; }
	@command -v java >/dev/null || { echo "java (for the Firestore emulator) is required"; exit 1; }
	@command -v pdftotext >/dev/null || { apt-get update -qq && apt-get install -y -qq poppler-utils >/dev/null; }
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

## test: lint, types and the whole suite against real emulators (started and stopped by the tests)
test: setup $(TEST_DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(DEV) build .pytest_cache .mypy_cache .ruff_cache

## demo: month close of Nov 2011 (UCI Online Retail sample) on local emulators, printed summary
demo: setup
	$(PY) -m devtools.demo $(if $(DEMO_CSV),--csv $(DEMO_CSV))

## serve: every function on loopback with the emulators and the local OIDC issuer, and the console
## behind the development IAP proxy (prints its URL; Ctrl-C stops)
serve: setup
	$(PY) -m devtools.serve

## bench: every benchmark in bench/ (month close 2011-11, generate_invoices 10,000, PDF rendering)
BENCHMARKS := $(sort $(basename $(notdir $(wildcard bench/bench_*.py))))
bench: setup
	@set -e; for b in $(BENCHMARKS); do echo "== $$b"; $(PY) -m bench.$$b; done
