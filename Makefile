# Each target creates .venv on first use, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= small
PYTEST_ARGS ?=

.PHONY: test test-long gate bench soak lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned to the local CPU wheel; installing it first keeps pip from pulling CUDA builds.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,onnx]'
	touch $(STAMP)

# Bytecode caching on: some machines set PYTHONDONTWRITEBYTECODE, and every xdist worker would
# then recompile hypothesis and torch's Python on each run.
RUN := env -u PYTHONDONTWRITEBYTECODE

# The fast small tier of every suite. Tests that drive many real jobs (marker `long`) run in
# `make test-long`; full fault batteries (marker `battery`) in the gate. CI runs all three.
# pytest exits 5 when a selection collects nothing; that is not a failure.
test: $(STAMP)
	$(RUN) $(BIN)/python -m pytest -n auto -q -m "not battery and not long" $(PYTEST_ARGS); \
	rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-long: $(STAMP)
	$(RUN) $(BIN)/python -m pytest -n auto -q -m "long and not battery" $(PYTEST_ARGS); \
	rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

gate: $(STAMP)
	$(RUN) $(BIN)/preflight gate --scale $(SCALE)

# Each benchmark measures its ratios side by side in one run and writes reports/bench-*.json.
bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

soak: $(STAMP)
	$(BIN)/preflight soak datagen --duration $${DURATION:-60s}

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
