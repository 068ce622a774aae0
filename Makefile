# One task runner; the README's commands and CI call these targets verbatim.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-system run test lint format typecheck bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: an unpinned torch would pull several GB of CUDA packages.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev,train,bench]'
	touch $@

install: $(VENV)/.installed

# Binaries the tests drive for real (each started by the harness on a free port): redis-server,
# Prometheus (promtool and a real scrape), nginx (config check and routing), redis_exporter,
# Chromium (the live page, driven headless over the DevTools protocol).
SYSTEM_BINARIES := redis-server promtool prometheus nginx prometheus-redis-exporter chromium
SYSTEM_PACKAGES := redis-server prometheus nginx prometheus-redis-exporter chromium
install-system:
	@missing=0; for b in $(SYSTEM_BINARIES); do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || [ -x /usr/bin/$$b ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing $(SYSTEM_PACKAGES)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(SYSTEM_PACKAGES)) >/dev/null || \
	  { echo "could not install $(SYSTEM_PACKAGES) (need root and Debian's apt)"; exit 1; }; fi

run: install
	$(VENV)/bin/liquid serve --host $(HOST) --port $(PORT)

test: install install-system
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) bench/core_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
