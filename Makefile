# Hangar: `make run` serves the dashboard, `make test` runs the whole suite.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test test-only lint format bench clean

run:
	@bash scripts/run.sh || [ $$? -eq 130 ]  # 130: stopped with Ctrl-C

test:
	@bash scripts/test-setup.sh
	$(MAKE) --no-print-directory test-only

# Both cores: each pytest-xdist worker is a session of its own (site label, test database,
# Celery worker and folders: config/settings_test.py), so the suite stays well under 15
# minutes on 2 cores. `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 2

# The suite alone, when the services are already up.
test-only:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy
	DJANGO_SETTINGS_MODULE=config.settings_test $(PY) manage.py check --fail-level WARNING
	.venv/bin/pytest $(PYTEST_ARGS) -m "not image_builds"
	@# Real image builds (minutes of CPU and disk) after the rest, on their own: beside
	@# them, the timing of local nodes and workers in the other tests is not the product's.
	.venv/bin/pytest -m image_builds

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
