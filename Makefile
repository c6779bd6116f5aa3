# The commands a newcomer runs. Only Python 3.11+ and make are needed: everything else is installed
# into .tools/ (a pinned Hatch) and .venv/ (the Hatch workspace environment, every package editable).

PYTHON ?= python3
HATCH_VERSION := 1.18.2
TOOLS := .tools
HATCH := $(TOOLS)/bin/hatch
RUN := $(HATCH) run
PACKAGES := common process-worker trigger-worker health-api
PYTEST_ARGS ?=
ARGS ?=


.PHONY: help env demo test unit e2e chaos chaos-quick bench lint typecheck fmt dist clean schemas

help:
	@echo "make demo   run the whole service locally against a simulated FileSpin and show what it decides"
	@echo "            (make demo ARGS=--keep stays up until Ctrl-C; ARGS=--direct skips supervisord)"
	@echo "make test   lint, type-check, unit tests, end-to-end tests and the reduced reliability suite"
	@echo "make e2e    end-to-end tests only       make lint / fmt / typecheck / dist / clean"
	@echo "make chaos  the reliability suite at full size (faults under load, ~7 min; make test runs it reduced)"
	@echo "make bench  throughput, latency, backend load, memory and scaling of the real workers vs bare Celery (<10 min)"

$(HATCH):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (PYTHON=$(PYTHON))")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "hatch==$(HATCH_VERSION)"

env: $(HATCH)
	$(RUN) python -c "import sys; print('workspace environment:', sys.prefix)"

demo: env
	$(RUN) python -m asset_post_process.devkit.demo $(ARGS)

test: lint unit e2e chaos-quick

unit: env
	$(RUN) pytest $(PYTEST_ARGS) $(addprefix packages/,$(addsuffix /tests,$(PACKAGES))) $(wildcard packages/devkit/tests)

e2e: env
	$(RUN) pytest $(PYTEST_ARGS) tests/e2e

# The reliability suite (tests/chaos, docs/reliability.md): workers SIGKILLed, Redis restarted, addon and backend
# outages, bad input at volume, secrets. Full size for `make chaos`, reduced (a few minutes) inside `make test`.
chaos: env
	CHAOS_SIZE=full $(RUN) pytest $(PYTEST_ARGS) tests/chaos

chaos-quick: env
	CHAOS_SIZE=quick $(RUN) pytest $(PYTEST_ARGS) tests/chaos

lint: env
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint docker/Dockerfile
	$(RUN) check-jsonschema --builtin-schema vendor.compose-spec stack.yml
	$(RUN) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml
	$(MAKE) --no-print-directory typecheck

typecheck: env
	$(RUN) mypy packages/common/src packages/process-worker/src packages/trigger-worker/src packages/health-api/src $(wildcard packages/devkit/src) $(wildcard docker/*.py)

fmt: env
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

dist: $(HATCH)
	rm -rf dist
	for pkg in $(PACKAGES); do (cd packages/$$pkg && ../../$(HATCH) build -t wheel ../../dist) || exit 1; done

clean:
	rm -rf dist .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

schemas: env
	$(RUN) python -m asset_post_process.common.contract packages/common/schemas

# Not part of `make test`: figures are measured, never asserted. ARGS e.g. "--quick" or "--json bench.json".
bench: env
	$(RUN) python -m asset_post_process.devkit.bench $(ARGS)
