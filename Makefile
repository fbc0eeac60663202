PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: install demo test bench clean

# Install edgeprune (editable) with the test tools; torch is pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The main job: the built-in quickstart study on synthetic data.
demo: $(STAMP)
	edgeprune demo --out demo-study

# The test suite.
test: $(STAMP)
	$(PYTHON) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PYTHON) benchmarks/run_all.py

clean:
	rm -rf $(STAMP) demo-study .pytest_cache build *.egg-info
