# Lastra Chat. `make run` serves on the embedded default (SQLite, offline bots);
# `make test` installs what it needs (venv, Chromium, node modules) and runs lint + every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint fmt chromium soak bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m app --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser tests (never a browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo ">> installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Node and npm (Debian's packages when missing), then clients/js's node modules (typescript,
# vue) from its committed lockfile, for the typed-client and Vue tests (clients/js/README.md).
JS_DIR := clients/js
.PHONY: node-deps
node-deps: $(JS_DIR)/node_modules/.package-lock.json

$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package-lock.json $(JS_DIR)/package.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo ">> installing Debian's nodejs and npm for the JS client tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

lint: install
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app

fmt: install
	$(BIN)/ruff format app tests bench
	$(BIN)/ruff check --fix app tests bench

test: install chromium node-deps lint
	$(BIN)/python -m pytest

soak: install
	LASTRA_SOAK_ROUNDS=$${LASTRA_SOAK_ROUNDS:-20} $(BIN)/python -m pytest -m slow -k fault -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts

# The benchmark (bench/README.md): Lastra's two transports against bare websockets,
# a naive FastAPI loop, python-socketio and naive sse-starlette. Results, charts and
# the command line land in bench/results/<mode>/. bench-quick: N=100,1000 (< 2 min);
# bench: N=100,1000,5000 (< 30 min). py-spy (profiles) is optional.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	-$(BIN)/python -m pip install -q py-spy
	$(BIN)/python -m bench.run --full

bench-quick: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	-$(BIN)/python -m pip install -q py-spy
	$(BIN)/python -m bench.run --quick
