# Everything a fresh machine needs is installed by these targets themselves:
# the venv and Python packages, the Kafka jars (Maven Central) and redis-server (apt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install stack-install compose-cli browser clean

# Every package comes from requirements-dev.lock, pinned with its hashes (pip refuses
# anything else); rtba itself is then installed from this tree with no further download.
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

stack-install: $(STAMP)
	$(BIN)/rtba stack install

demo: stack-install
	$(BIN)/rtba demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The compose test needs a Compose CLI; where only the docker client is here, Debian's
# docker-compose provides one (no engine is needed to validate the file).
compose-cli:
	@if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 \
	    && ! command -v docker-compose >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing docker-compose (Debian) to validate docker-compose.yml"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null); \
	fi

# The dashboard test drives Debian's chromium through Playwright (no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium (Debian) for the dashboard test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	    || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	fi

# Every test on one redis-server, then the tests that use Redis again on a three-master
# Redis Cluster (the same code, asked which kind of server it talks to); not those that
# start stacks of their own, whatever the pass (the demo's; up-down-up, run for both kinds),
# nor the benchmark harness's smoke run (`make bench` runs its Cluster scenario in full),
# nor those whose subject has nothing to do with Redis (pseudonyms, a Kafka broker restart).
test: stack-install compose-cli browser lint
	$(BIN)/pytest
	RTBA_REDIS_CLUSTER=1 $(BIN)/pytest -m integration tests/integration tests/agent \
	  --ignore=tests/integration/test_demo.py --ignore=tests/integration/test_security.py \
	  --deselect tests/integration/test_stack.py::test_up_down_up_keeps_redis_data \
	  --deselect tests/integration/test_bench.py \
	  --deselect tests/integration/test_erase.py::test_with_a_pseudonym_key_redis_and_the_outputs_hold_no_real_id \
	  --deselect tests/integration/test_faults.py::test_broker_restart_loses_nothing_and_logs_little

# Full sizes: the benchmarks, and the worker-SIGKILL fault scenario at ~100k events.
bench: stack-install
	mkdir -p .rtba && $(BIN)/python -m benchmarks.pipeline --json .rtba/bench-pipeline.json
	$(BIN)/python -m benchmarks.pipeline --only dD --population 1000000 --json .rtba/bench-million.json
	$(BIN)/python -m benchmarks.pipeline --redis-cluster --only de --json .rtba/bench-cluster.json
	$(BIN)/python -m benchmarks.population --customers 1000000 --json .rtba/bench-population.json
	$(BIN)/python -m benchmarks.durability
	$(BIN)/python -m benchmarks.clustering
	$(BIN)/python -m benchmarks.audiences --json .rtba/bench-audiences.json
	RTBA_FAULT_SCALE=7.5 $(BIN)/pytest -q -s tests/integration/test_faults.py -k sigkilled

clean:
	rm -rf $(VENV) .rtba .pytest_cache .ruff_cache
