# LearnFlow: the interface for people and CI. `make run` and `make test` set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# pyenv machines keep 3.12 and 3.13 beside the default 3.11: make them all visible and take the
# newest (the Lambda runtime is python3.13; the code stays 3.11-compatible).
export PYENV_VERSION ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.(11|12|13)\.[0-9]+$$' | sort -t. -k2,2nr | paste -sd: -)
PYTHON ?= $(shell export PYENV_VERSION=$(PYENV_VERSION); for v in 3.13 3.12 3.11; do command -v python$$v >/dev/null 2>&1 && python$$v -c 'import sys' 2>/dev/null && { echo python$$v; break; }; done)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SAM_STAMP := $(SAM_VENV)/.installed
SRC := functions layers/shared cli tests bench loadtest

.PHONY: help run test lint typecheck unit bench load build validate clean browser deploy

help:
	@echo "make run    start the whole API locally on http://127.0.0.1:3000/v2 (ARGS='--port 3100 ...')"
	@echo "make test   lint, type-check, template checks and every test"
	@echo "make lint   ruff check, ruff format --check, mypy --strict"
	@echo "make bench  benchmarks"
	@echo "make load   hostile load test with invariants (own stack, or ARGS='--keys-file keys.json')"
	@echo "make build  sam build    make validate  sam validate (+ --lint)"
	@echo "make deploy ENV=dev|prod  sam build, then sam deploy --config-env ENV (samconfig.toml; never in CI)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11+ on PATH" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@test -x $(SAM_VENV)/bin/uv || $(SAM_VENV)/bin/pip install --quiet uv
	$(SAM_VENV)/bin/uv pip install --quiet --python $(SAM_VENV)/bin/python aws-sam-cli
	@touch $@

run: $(STAMP)
	$(BIN)/learnflow serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy $(SRC)

# Two workers, one a core: every module of the local stack's tests in one (one `learnflow serve`),
# the other modules beside them, each whole in one worker (tests/conftest.py groups them).
# PYTEST_ARGS add to these (`-n 0` runs in this process alone, `-m "not e2e"` skips the stack).
test: lint browser
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# tests/e2e/test_docs_page.py opens GET /v2/docs in Debian's headless Chromium: a fresh machine
# gets it from apt-get (as root, else through sudo); anywhere else it must be installed by hand.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { \
	    echo "make test needs Chromium (\`chromium\` on PATH) and there is no apt-get to install it: install Chromium first" >&2; exit 1; }; \
	  as=; [ "$$(id -u)" = 0 ] || as=sudo; \
	  echo "Installing Chromium (apt-get install chromium) for the browser test ..."; \
	  { $$as env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && $$as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
	    && command -v chromium >/dev/null 2>&1 || { \
	    echo "make test needs Chromium: apt-get could not install it (try: sudo apt-get install chromium)" >&2; exit 1; }; \
	}

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

load: $(STAMP)
	$(BIN)/python -m loadtest $(ARGS)

validate: $(SAM_STAMP)
	$(SAM_VENV)/bin/sam validate
	$(SAM_VENV)/bin/sam validate --lint

build: $(SAM_STAMP)
	$(SAM_VENV)/bin/sam build

# A person deploys, with their own AWS credentials: samconfig.toml holds the dev and prod
# environments (stack, parameters); docs/operations.md says how to watch the canary and roll back.
# CI never deploys (it has no credentials, and a merge is not a release). DRY_RUN=1 only prints.
deploy:
	@if [ -n "$$CI" ]; then \
	  echo "make deploy does not run in CI: deploy from a workstation (docs/operations.md)" >&2; exit 1; fi
	@case "$(ENV)" in dev|prod) ;; *) \
	  echo "usage: make deploy ENV=dev or ENV=prod (the environments of samconfig.toml)" >&2; exit 1;; esac
	@echo "$(SAM_VENV)/bin/sam build && $(SAM_VENV)/bin/sam deploy --config-env $(ENV)"
	@if [ -z "$(DRY_RUN)" ]; then \
	  $(MAKE) --no-print-directory $(SAM_STAMP) && \
	  $(SAM_VENV)/bin/sam build && $(SAM_VENV)/bin/sam deploy --config-env $(ENV); fi

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
