# One task runner; the README's commands and CI call these targets verbatim.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-system run test test-portable lint format typecheck bench bench-service bench-cluster chaos chaos-cluster soak clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: an unpinned torch would pull several GB of CUDA packages.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev,train,bench]'
	# Native LTC kernels built now, not on the first request; no compiler: the PyTorch path, said once.
	$(PY) -m liquidcore.native
	touch $@

install: $(VENV)/.installed

# Binaries the tests drive for real (each started by the harness on a free port): redis-server,
# Prometheus (promtool and a real scrape), nginx (config check and routing), redis_exporter,
# Chromium (the live page, driven headless over the DevTools protocol), mosquitto and its
# clients (the MQTT broker of tests/mqtt, and mosquitto_pub / mosquitto_sub).
SYSTEM_BINARIES := redis-server promtool prometheus nginx prometheus-redis-exporter chromium \
  mosquitto mosquitto_pub mosquitto_sub
SYSTEM_PACKAGES := redis-server prometheus nginx prometheus-redis-exporter chromium \
  mosquitto mosquitto-clients
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
	$(MAKE) --no-print-directory test-portable

# The numerics contract (docs/numerics.md) and the native-kernel fallback on the other CPU and
# toolchain paths, so a CPU-dependent assertion cannot land again: the AVX2 kernels (what an
# older or differently dispatched x86-64 machine runs), one OpenMP thread, and no C compiler
# with an empty native-kernel cache (the pure-PyTorch LTC path).
PORTABLE_TESTS := tests/service/test_engine.py tests/test_ltc.py tests/test_native_ltc.py \
  tests/test_native_warm_at_start.py
test-portable: install install-system
	ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)
	cache=$$(mktemp -d) && CC=/bin/false LIQUIDCORE_NATIVE_CACHE=$$cache \
	  $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS); rc=$$?; rm -rf $$cache; exit $$rc

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) bench/core_speed.py

# The service under load (bench/service_load.py): ours (embedded, Redis) beside a naive and a
# bare reference server, driven by wrk (a Debian package, installed here when missing).
bench-service: install install-system
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk) >/dev/null || \
	  { echo "could not install wrk (need root and Debian's apt)"; exit 1; }
	$(PY) bench/service_load.py --rounds 3 --plot docs/bench/service_load.png

# The chaos campaign (docs/chaos.md): Redis with AOF and 2 replicas under load, every fault in
# turn, an oracle replaying what was acknowledged; rewrites the table in docs/chaos.md (~6 min).
CHAOS_ARGS ?=
chaos: install install-system
	PYTHONPATH=. $(PY) -m tests.chaos --out docs/chaos.md $(CHAOS_ARGS)

# Soak (BENCHMARKS.md): steady load and WebSocket churn; RSS slope and open fds (3 min default).
SOAK_ARGS ?=
# One Redis vs a 3-master Redis Cluster, same service and workloads (BENCHMARKS.md).
bench-cluster: install install-system
	@command -v wrk >/dev/null 2>&1 || { echo "wrk is not installed (make bench-service installs it)"; exit 1; }
	PYTHONPATH=. $(PY) bench/cluster_load.py $(BENCH_CLUSTER_ARGS)

# The Redis Cluster campaign: a fresh 6-node cluster per run, a reshard and a master SIGKILL under
# load, with and without LIQUID_REDIS_MIN_REPLICAS_ACK=1; every acknowledged event checked.
chaos-cluster: install install-system
	PYTHONPATH=. $(PY) -m tests.chaos.redis_cluster_campaign $(CHAOS_CLUSTER_ARGS)

soak: install install-system
	PYTHONPATH=. $(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
