# govbus — the two commands a fresh clone needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)

.PHONY: install demo up test lint format proto bench clean

# NO_INSTALL=1 uses .venv as it is (e.g. a test that runs make in a scratch copy
# sharing this checkout's .venv must never reinstall it from the copy).
ifeq ($(NO_INSTALL),1)
INSTALL :=
else
INSTALL := $(STAMP)
endif

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: $(INSTALL)
	$(PY) -m service_centre.demo

up: $(INSTALL)
	$(VENV)/bin/govbus up

proto: $(INSTALL)
	$(PY) -m govbus.protogen

lint: $(INSTALL)
	$(PY) -m govbus.protogen --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(INSTALL)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest -m "not slow"

# The benchmarks, then the long runs marked slow (e.g. the fault tests on every agency).
bench: $(INSTALL)
	$(PY) -m loadtest.bench
	$(VENV)/bin/pytest -m slow -s

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
