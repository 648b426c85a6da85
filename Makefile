# Two commands on a fresh machine (see README):
#   make repro   - set up .venv and run the pipeline (`dvc repro` on params.yaml)
#   make test    - set up .venv and run the test suite (what CI runs)
# Both install the s3 and dask extras too, so remote storage and Dask work out of the box.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stages call `python -m stages.<name>`: put the venv first on PATH so that `python` is ours.
RUN := PATH="$(BIN):$$PATH" DVC_NO_ANALYTICS=1

.PHONY: setup repro test lint pull
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

test: setup
	$(RUN) python -m pytest

lint: setup
	$(BIN)/ruff check kennen stages tests
