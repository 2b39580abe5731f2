# Hangar: `make run` serves the dashboard, `make test` runs the whole suite.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test test-only lint format bench clean

run:
	@bash scripts/run.sh || [ $$? -eq 130 ]  # 130: stopped with Ctrl-C

test:
	@bash scripts/test-setup.sh
	$(MAKE) --no-print-directory test-only

# The suite alone, when the services are already up.
test-only:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy
	.venv/bin/pytest $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench:
	@bash scripts/test-setup.sh
	$(PY) -m bench $(BENCH)

clean:
	rm -rf .local/staticfiles .pytest_cache .ruff_cache .mypy_cache
