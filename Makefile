# Two commands on a fresh machine (see README):
#   make repro   - set up .venv and run the pipeline (`dvc repro` on params.yaml)
#   make test    - set up .venv, check lint and formatting, run the test suite (what CI runs)
#   make test-fast - the tests not marked slow (no training, no DVC): a quick check while editing
# Both install the s3 and dask extras too, so remote storage and Dask work out of the box.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages call `python -m stages.<name>`: put the venv first on PATH so that `python` is ours.
RUN := PATH="$(BIN):$$PATH" DVC_NO_ANALYTICS=1

PY_DIRS := kennen stages tests benchmarks scripts

.PHONY: setup repro test test-fast lint pull
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,s3,dask]"
	touch $@

repro: setup
	$(RUN) dvc repro

# A fresh clone's default remote is a folder beside the checkout: say what to configure when it is missing.
pull: setup
	$(RUN) python -m kennen.remote && $(RUN) dvc pull

test: setup lint
	$(RUN) python -m pytest

test-fast: setup
	$(RUN) python -m pytest -m "not slow" -q

lint: setup
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
