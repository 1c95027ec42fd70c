# `make demo` and `make test` are all a fresh machine needs (plus Debian's chromium for the
# browser tests, which .ci/run installs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint docs format bench clean

# The runtime dependencies only (what `make demo` needs)...
$(BIN)/.runtime: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# ...and with the test extras (pytest, playwright, mypy, ruff, build, gunicorn...).
$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.runtime
	$(BIN)/digest demo

# The whole suite: lint, types, layers, the docs site, every test (browsers, processes, the wheel).
test: lint docs
	$(BIN)/pytest

# The quick tier: no browsers, real processes, simulated weeks, property searches or wheel builds.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q -m "not slow"

# The same checks as .pre-commit-config.yaml.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site, strictly: a broken link, anchor or missing page fails.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Each benchmark at its default size (benchmarks/floor.py is run by send.py, beside each send).
bench: $(BIN)/.installed
	$(BIN)/python benchmarks/send.py
	$(BIN)/python benchmarks/events.py
	$(BIN)/python benchmarks/lift.py
	$(BIN)/python benchmarks/archive.py
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) site demo outbox preview digest.db digest.db-wal digest.db-shm build dist digest.egg-info
