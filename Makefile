# Lastra Chat. `make run` serves on the embedded default (SQLite, offline bots);
# `make test` installs what it needs (venv, Chromium, node modules) and runs lint + every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint fmt chromium soak fuzz bench bench-quick clean lock upgrade image-check

# Install from the committed lock (requirements/*.txt, pinned with hashes) and from
# nothing else: the package itself goes in without dependencies or build isolation.
$(STAMP): requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
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
	$(BIN)/ruff check --no-cache app tests bench scripts
	$(BIN)/ruff format --no-cache --check app tests bench scripts
	$(BIN)/mypy app

fmt: install
	$(BIN)/ruff format app tests bench scripts
	$(BIN)/ruff check --fix app tests bench scripts

test: install chromium node-deps lint image-check
	$(BIN)/python -m pytest

# Fuzzing at volume (issue 14, tests/support/fuzzer.py): ten minutes of generated inputs against a
# real `python -m app` (WebSocket frames of every type, raw frames, every POST and session
# body, SSE query strings and headers, the legacy wire); it needs >= 100,000 inputs, no 5xx,
# no `internal` error, every connection place given back and a bounded RSS. FUZZ_SEED
# replays a run. `make test` runs 15 s of the same (tests/test_fuzz_volume.py).
FUZZ_SECONDS ?= 600
fuzz: install
	$(BIN)/python tests/support/fuzzer.py --budget $(FUZZ_SECONDS) --min-inputs 100000 \
	  $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

soak: install
	LASTRA_SOAK_ROUNDS=$${LASTRA_SOAK_ROUNDS:-20} $(BIN)/python -m pytest -m slow -k fault -s

# The lock (requirements/README.md): `make lock` recompiles it from pyproject.toml's ranges
# and requirements/*.in, keeping today's pins where they still fit; `make upgrade` moves every
# pin to the newest release the ranges allow, reinstalls and runs the whole suite.
# PIP_CONFIG_FILE=/dev/null: hashes come from the public index, not from a local mirror.
LOCK_ENV  := PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
LOCK_ARGS := --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: install
	$(LOCK_ENV) $(BIN)/pip-compile -q $(LOCK_ARGS) $(LOCK_FLAGS) --extra dev --extra bench \
	  -o requirements/dev.txt pyproject.toml requirements/tools.in
	$(LOCK_ENV) $(BIN)/pip-compile -q $(LOCK_ARGS) $(LOCK_FLAGS) \
	  -o requirements/runtime.txt pyproject.toml requirements/runtime.in

upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade
	rm -f $(STAMP)
	$(MAKE) test

# The Docker image, checked without a Docker engine (scripts/image_check.py): hadolint on the
# Dockerfile, then the wheel installed from the runtime lock into a new venv outside the repo
# and run as an unprivileged user from an empty directory, as the image runs it.
image-check: install
	$(BIN)/hadolint Dockerfile
	$(BIN)/python scripts/image_check.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts

# The benchmark (bench/README.md): Lastra's two transports against bare websockets,
# a naive FastAPI loop, python-socketio, naive sse-starlette, Node.js `ws` and
# nginx+nchan. Results, charts and the command line land in bench/results/<mode>/.
# bench-quick: N=100,1000; bench: N=100,1000,5000. Its Python packages and py-spy are
# in the lock; bench-peers installs the peers when missing: `ws` from
# bench/peers/package-lock.json (npm ci), nginx and its nchan module from Debian.
PEERS_DIR := bench/peers
NCHAN_SO := /usr/lib/nginx/modules/ngx_nchan_module.so

.PHONY: bench-peers
bench-peers: $(PEERS_DIR)/node_modules/.package-lock.json $(NCHAN_SO)

$(PEERS_DIR)/node_modules/.package-lock.json: $(PEERS_DIR)/package-lock.json $(PEERS_DIR)/package.json
	@command -v npm >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd $(PEERS_DIR) && npm ci --no-audit --no-fund

# Debian's packages; the bench starts nginx itself on its own prefix (never the service)
$(NCHAN_SO):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  nginx-light libnginx-mod-nchan

bench: install bench-peers
	$(BIN)/python -m bench.run --full

bench-quick: install bench-peers
	$(BIN)/python -m bench.run --quick
