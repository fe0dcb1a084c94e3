# The two commands a newcomer runs:
#   make run   executes every tutorial in the `docs` profile, JOBS at a time (default: one per core), and rebuilds the docs site
#   make test  checks notebooks and library are in sync, runs every notebook (smoke profile) and tests/
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBS ?= $(sort $(wildcard nbs/*.ipynb))
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
# pytest-xdist: JOBS workers, each notebook (and each test file, whose fixtures are per module) kept on one worker;
# one thread per worker so that JOBS workers share JOBS cores; conftest.py serialises the files that launch torchrun
XDIST := $(if $(filter 1,$(JOBS)),-p no:xdist,-n $(JOBS) --dist loadfile)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: install run test docs readme sync check-sync test-nbs test-py bench clean

$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make run: execute the tutorials (docs profile) with outputs saved, JOBS at a time, one thread each (`make run JOBS=1`
## for one after another); 99_results and index run last; the wall time of each notebook and the total are printed
run: install
	$(BIN)/nbdev_export
	INVGEN_PROFILE=docs $(BIN)/python tools/execute_nbs.py --jobs $(JOBS) $(NBS)
	$(MAKE) --no-print-directory docs

## make docs: rebuild README.md and the offline docs site from the executed notebooks
docs: install readme
	$(BIN)/python tools/build_docs.py
	@echo "docs site: file://$(CURDIR)/docs/_build/html/index.html"

readme: install
	$(BIN)/python tools/make_readme.py

## make sync: export the library, clean the notebooks, regenerate the README (what to run before committing)
sync: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python tools/make_readme.py

## make check-sync: fail if nbdev_export / nbdev_clean / the README generator change anything
check-sync: install
	$(BIN)/python tools/check_sync.py

# the tests never see a populated fitted-model cache: each run gets an empty one
test-nbs: install
	OMP_NUM_THREADS=1 INVGEN_CACHE=$$(mktemp -d) INVGEN_PROFILE=smoke $(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) --nbval-lax --nbval-current-env $(NBS)

test-py: install
	OMP_NUM_THREADS=1 INVGEN_CACHE=$$(mktemp -d) INVGEN_PROFILE=smoke $(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) tests --durations=15

test: install
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory check-sync && \
	$(MAKE) --no-print-directory test-nbs && \
	$(MAKE) --no-print-directory test-py; rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

## make bench: the benchmarks of the `slow` cells (batched replicas in 00_core, Hutchinson vs exact trace, ...), docs profile
bench: install
	INVGEN_PROFILE=docs INVGEN_TEST_FLAGS=slow $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env $(NBS) -s

clean:
	rm -rf docs/_build _proc .pytest_cache build *.egg-info
