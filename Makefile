# The README's quick start: `make train` and `make test`, each on a fresh machine.
# Both create .venv when it is missing and install the pinned packages
# (constraints.txt) before they run; a stamp file skips the install next time
# unless the package metadata or the pins changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist worker processes for `make test`; 0 runs the suite in one process
TEST_WORKERS ?= 2
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: train test

train: $(VENV)/.installed
	$(BIN)/python scripts/train.py $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	touch $(VENV)/.installed $@
