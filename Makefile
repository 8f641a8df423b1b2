# Every target creates .venv on first use with a Python >= 3.12 found by scripts/find-python and
# installs the locked dependency set (constraints.txt; `make lock` refreshes it).
VENV  := .venv
LOCK  := constraints.txt
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PY    := $(VENV)/bin/python

.PHONY: test test-all check quickstart bench lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || { interp=$$(bash scripts/find-python) || exit 1; \
	  echo "creating $(VENV) with $$interp"; "$$interp" -m venv $(VENV); }
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# --dist loadgroup: tests marked xdist_group share a worker (the cluster tests: one Slurm).
test: $(STAMP)  ## fast suite and the docstring examples (deselects the long checks marked slow)
	$(PY) -m pytest -n auto --dist loadgroup -m "not slow" -q

test-all: $(STAMP)  ## everything, including the slow statistical checks
	$(PY) -m pytest -n auto --dist loadgroup -q

# A first try: the README's examples, building models, bad input named, log densities checked.
CHECK := tests/test_readme.py tests/model/test_building.py tests/model/test_bad_input.py \
         tests/model/test_logdensity.py
check: $(STAMP)  ## a first try in about a minute (2 cores): the README's examples and model basics
	$(PY) -m pytest -n auto -m "not slow" -q $(CHECK)

quickstart: $(STAMP)  ## small study on an embedded default; prints where the results are
	$(PY) -m hjax.cli quickstart

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## hjax vs NumPyro vs Stan, one process (~50 min on 2 cores; BENCH_ARGS=--quick)
	$(PY) -m scripts.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

lock: $(STAMP)  ## refresh constraints.txt from pyproject.toml's ranges
	bash scripts/lock

clean:
	rm -rf $(VENV) .pytest_cache hjax.egg-info
