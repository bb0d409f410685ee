# The template's entry point, for people and for CI alike.
# Needs only python3 (3.10 or newer, with its venv module) and make.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The generated project needs Python 3.11 or newer (scikit-learn's floor). With an older
# $(PYTHON), uv, installed into this small environment, finds or downloads a newer one.
BOOTSTRAP := $(VENV)-bootstrap
PYTHON_IS_NEW_ENOUGH := $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'
DEMO_DIR ?= build
PYTEST_ARGS ?=
PYTEST_WORKERS ?= auto

# The environment is rebuilt whenever the pinned requirements change.
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test lint bench-peers clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	@if $(PYTHON_IS_NEW_ENOUGH); then \
		set -x; $(PYTHON) -m venv $(VENV); \
	else \
		echo "$(PYTHON) is older than 3.11; uv finds or downloads a newer Python."; \
		set -ex; $(PYTHON) -m venv $(BOOTSTRAP); \
		$(BOOTSTRAP)/bin/python -m pip install --quiet --disable-pip-version-check \
			"$$(grep '^uv==' requirements-dev.txt)"; \
		$(BOOTSTRAP)/bin/uv venv --seed --python '>=3.11' $(VENV); \
	fi

$(INSTALLED): requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		"$$(grep '^uv==' requirements-dev.txt)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-dev.txt
	touch $@

# The project's environment is made with $(PYTHON), or with this one's when that is too old.
demo: $(INSTALLED) ## Quick start: bake the default project into build/ and run it end to end
	@python=$(PYTHON); $(PYTHON_IS_NEW_ENOUGH) || python=$(abspath $(BIN)/python); \
		set -x; $(BIN)/python scripts/quickstart.py --output-dir $(DEMO_DIR) --python "$$python"

# One worker per CPU; PYTEST_WORKERS=0 runs the suite in this one process.
test: $(INSTALLED) ## Run the template's whole test suite (bakes, hooks, projects, gates, Docker)
	$(BIN)/pytest -v --numprocesses $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(INSTALLED) ## Check the hooks, tests, scripts and benchmarks with flake8
	$(BIN)/flake8 hooks tests scripts benchmarks

# Bakes the default project and serves its model beside MLServer and MLflow (README, "Peers").
PEERS_DIR ?= build/peers
bench-peers: $(INSTALLED) ## Benchmark the generated service beside MLServer and MLflow's server
	$(BIN)/python benchmarks/peers.py --output-dir $(PEERS_DIR)

clean: ## Remove the virtual environment and the demo project
	rm -rf $(VENV) $(BOOTSTRAP) $(DEMO_DIR) .pytest_cache
