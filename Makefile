# Two entry points (see README): `make run` runs the main job, `make test` runs the tests.
# Both create the project-local virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# Installed first when the environment has no torch, so that the dependency resolver does not
# pick the newest (CUDA, several GB) build. Override e.g. TORCH_SPEC='torch==2.13.0+cu126'.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.eqs-installed
PYTEST_ARGS ?=

.PHONY: setup run test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "eqs needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/eqs run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
