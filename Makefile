# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.iclr17-installed

.PHONY: demo test test-all lint bench

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m iclr17.demo

# Two test workers: the DDP tests' gloo processes and the C++ builds leave cores idle that a second worker fills.
# The 15 slowest tests are listed at the end: the default suite has to stay under 10 minutes on the 2-core machine.
PYTEST := $(BIN)/python -m pytest -n 2 --dist worksteal --durations=15

test: $(INSTALLED)
	$(PYTEST)

test-all: $(INSTALLED)
	$(PYTEST) -m ""

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(INSTALLED)
	$(BIN)/python -m pip install -e '.[dev,bench]'
	for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
