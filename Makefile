PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install.stamp
FULL_STAMP := .install-full.stamp

.PHONY: install install-full demo test test-slow fuzz bench clean

# Install edgeprune (editable) with its full toolchain; torch is pinned by constraints.txt. setup.py compiles the
# optional HisarMod CSV parser (edgeprune/data/_hisarparse.c) in place where gcc and the Python headers exist;
# a change to it reinstalls. --no-compile: pip would byte-compile every installed module (torch's thousands) up
# front, which was more than half of the install's time (benchmarks/bench_demo.py); Python compiles what is
# imported on first import instead.
PIP_INSTALL := $(PIP) install -q --no-compile -c constraints.txt
$(FULL_STAMP): pyproject.toml constraints.txt setup.py edgeprune/data/_hisarparse.c
	$(PIP_INSTALL) torch==2.13.0 -e ".[full]"
	@touch $(FULL_STAMP)

# The full toolchain plus the test tools and what the tests use for real (Ray, polygraphy, sigmf, pytest-xdist),
# byte-compiled: the suite starts hundreds of Python processes, and where PYTHONDONTWRITEBYTECODE is set (as on this
# project's CI machines) nothing imported would ever be cached, so each of them would compile torch and sympy again
# (the suite took 802 s that way, against 542-585 s with compiled packages; docs/benchmarks.md).
$(STAMP): pyproject.toml constraints.txt setup.py edgeprune/data/_hisarparse.c
	$(PIP) install -q -c constraints.txt torch==2.13.0 -e ".[dev]"
	$(PYTHON) -m compileall -q -j 0 $$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') >/dev/null || true
	@touch $(FULL_STAMP) $(STAMP)

install-full: $(FULL_STAMP)
install: $(STAMP)

# The main job: the built-in quickstart study on synthetic data (needs only the full toolchain).
demo: $(FULL_STAMP)
	$(PYTHON) -m edgeprune demo --out demo-study

# The test suite, in as many worker processes as this machine has cores (pytest-xdist; one test file per worker
# at a time, so a file's shared fixtures are built once). EDGEPRUNE_TEST_WORKERS=0 runs it in this process.
# `make test` leaves out the `slow` tests (a whole training or study killed and resumed, a real Ray cluster: each
# runs its work two or three times); `make test-slow` runs just those. CI (.ci/run) runs both.
TEST_WORKERS := $(or $(EDGEPRUNE_TEST_WORKERS),auto)
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --maxprocesses 8 --dist loadfile
test: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

# Longer randomised fuzzing (not part of `make test`): fresh hypothesis examples on every run,
# EDGEPRUNE_FUZZ_SCALE (default 10) times as many; a failure prints its falsifying example.
fuzz: $(STAMP)
	EDGEPRUNE_HYPOTHESIS=fuzz $(PYTHON) -m pytest -q -p no:cacheprovider tests/robustness/test_fuzz.py

bench: $(STAMP)
	$(PYTHON) benchmarks/run_all.py

clean:
	rm -rf $(STAMP) $(FULL_STAMP) demo-study .pytest_cache build *.egg-info edgeprune/data/_hisarparse*.so
