PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: install demo test fuzz bench clean

# Install edgeprune (editable) with the test tools; torch is pinned by constraints.txt. setup.py compiles the
# optional HisarMod CSV parser (edgeprune/data/_hisarparse.c) in place where gcc and the Python headers exist;
# a change to it reinstalls.
$(STAMP): pyproject.toml constraints.txt setup.py edgeprune/data/_hisarparse.c
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The main job: the built-in quickstart study on synthetic data.
demo: $(STAMP)
	edgeprune demo --out demo-study

# The test suite, in as many worker processes as this machine has cores (pytest-xdist; one test file per worker
# at a time, so a file's shared fixtures are built once). EDGEPRUNE_TEST_WORKERS=0 runs it in this process.
TEST_WORKERS := $(or $(EDGEPRUNE_TEST_WORKERS),auto)
test: $(STAMP)
	$(PYTHON) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --maxprocesses 8 --dist loadfile

# Longer randomised fuzzing (not part of `make test`): fresh hypothesis examples on every run,
# EDGEPRUNE_FUZZ_SCALE (default 10) times as many; a failure prints its falsifying example.
fuzz: $(STAMP)
	EDGEPRUNE_HYPOTHESIS=fuzz $(PYTHON) -m pytest -q -p no:cacheprovider tests/robustness/test_fuzz.py

bench: $(STAMP)
	$(PYTHON) benchmarks/run_all.py

clean:
	rm -rf $(STAMP) demo-study .pytest_cache build *.egg-info edgeprune/data/_hisarparse*.so
