# memhp -- make demo / make test set everything up on a fresh machine.
# Debian's python3.11 when there is one: it is built with PGO and LTO, and the model
# runs ~1.4x faster on it than on a plain ./configure build of 3.11 (benchmarks/NOTES.md)
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3.11)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the slowest tests in the log (CI time is watched: .ci/run should stay near 30 min)
PYTEST_ARGS ?= --durations=30

.PHONY: demo test lint typecheck check bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1 || true
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m memhp.cli.main demo machines/seed.toml

lint: $(STAMP)
	$(VENV)/bin/ruff check memhp tests benchmarks
	$(VENV)/bin/ruff format --check memhp tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
