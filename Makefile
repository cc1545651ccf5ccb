# Entry points; each target installs what it needs first (idempotently).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: install test demo bench bench-control lint clean

install:
	@bash scripts/install.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

demo: install
	$(PY) -m lb.lab.demo

bench: install
	$(PY) -m bench.dataplane

bench-control: install
	$(PY) -m bench.controlplane

lint: install
	$(PY) -m ruff check lb api bench tests
	.venv/bin/lint-imports
	.venv/bin/mypy
	.venv/bin/vulture lb api vulture_whitelist.py --min-confidence 80

clean:
	rm -rf .venv .pytest_cache
