# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EDGEXFER := $(VENV)/bin/edgexfer
STAMP := $(VENV)/.edgexfer-installed
DEMO ?= demo

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,cpu,dev]'
	touch $@

setup: $(STAMP)

demo: setup
	$(EDGEXFER) train builtin:uci_digits --out $(DEMO)/run --epochs 15

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
