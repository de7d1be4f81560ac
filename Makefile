# Every target creates and uses .venv in the repo root; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench clean screenshot

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ticketq demo

test: lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# BENCH_ARGS=--quick for a smoke run of about two minutes; see docs/performance.md
bench: $(STAMP)
	$(BIN)/python -m ops.bench $(BENCH_ARGS)

# docs/dashboard.png: the dashboard mid-import, taken by the browser test
screenshot: $(STAMP)
	TICKETQ_DASHBOARD_PNG=docs/dashboard.png $(BIN)/pytest tests/browser -q
