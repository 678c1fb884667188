# The README's two commands:  `make book`  and  `make test`.
# Each creates the environment on first use (scripts/venv.sh), then does its job.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := $(shell bash scripts/venv.sh --path)
PY := $(VENV)/bin/python
# glibc hands large tensors back to the OS after each step and page-faults them in again on the
# next; keeping them in the heap makes a CPU training step markedly faster.
export MALLOC_MMAP_THRESHOLD_ = 33554432
export MALLOC_TRIM_THRESHOLD_ = 2147483648
export MALLOC_TOP_PAD_ = 268435456
export DUALPATH_PROGRESS = 0

.PHONY: venv train book book-smoke test test-method pipeline html check-html clean-book ablations ablations-tables ablations-smoke central seeds sync

venv:                        ## create the environment (once per requirements.txt) and install this clone
	@bash scripts/venv.sh > /dev/null

book: pipeline html          ## run the notebooks on Flickr8k (CPU defaults) and build the HTML book

train: venv                  ## the book's training run alone: features + Stage I + Stage II + test (cpu preset)
	$(PY) -m dualpath.train --preset cpu --run-dir runs/book/cpu-efficientnet_lite0-seed0

# e.g. make book PARAMS="-p stage2_epochs 10": only the notebooks that depend on it rerun
PARAMS ?=
# runs a sweep trains side by side, each on cores / SWEEP_JOBS torch threads (benchmarks/bench_sweep_jobs.py measures which is faster)
SWEEP_JOBS ?= 2
# more options of the sweeps below, e.g. SWEEP_ARGS="--scheduler tcp://HEAD:8786 --resources GPU=1" (README: Run the sweep on a cluster)
SWEEP_ARGS ?=

pipeline: venv               ## execute notebooks/ in order with papermill, keeping each executed copy
	$(PY) -m dualpath_book.pipeline $(PARAMS)

html: venv                   ## compile the executed notebooks and book/ into _build/html
	$(PY) -m dualpath_book.site.mathjax . > /dev/null
	$(PY) -m dualpath_book.site.tryit . > /dev/null
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

check-html: venv             ## open every page of _build/html in headless Chromium: figures shown, nothing fetched
	@bash scripts/browser.sh
	$(PY) -m dualpath_book.site.htmlcheck _build/html --toc _toc.yml

book-smoke: venv             ## the same book from the mini split, in minutes
	$(PY) -m dualpath_book.pipeline --smoke
	$(PY) -m dualpath_book.site.mathjax . > /dev/null
	$(PY) -m dualpath_book.site.tryit . > /dev/null
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: venv                   ## the test suite, both packages' tests (CI runs this)
	@bash scripts/browser.sh
	$(PY) -m pytest -q -ra

test-method: venv            ## the method's tests alone (tests/method): no browser, papermill or book build
	$(PY) -m pytest -q -ra tests/method

ablations: central          ## the ablation sweep at 5 + 8 of the book's 5 + 15 epochs (grids/ablations.yaml, estimated 11 hours on 2 cores, resumable) -> book/tables/ablations*
	$(PY) -m dualpath_book.sweep grids/ablations.yaml --out runs/sweeps --jobs $(SWEEP_JOBS) --restore book/tables $(SWEEP_ARGS)
	$(MAKE) --no-print-directory ablations-tables

ablations-tables: venv      ## the sweep's results so far -> book/tables/ablations.csv + ablations_ranks.npz (commit them; a sweep elsewhere resumes from them)
	cp runs/sweeps/ablations/results.csv book/tables/ablations.csv
	$(PY) -m dualpath_book.ablation_report runs/sweeps/ablations --out book/tables/ablations_ranks.npz

central: venv              ## the loss comparison at the cpu-narrow recipe's whole budget (grids/central.yaml, 3 arms x 3 seeds, one thread each) -> book/tables/central.csv
	$(PY) -m dualpath_book.sweep grids/central.yaml --out runs/sweeps --jobs 2 --restore book/tables $(SWEEP_ARGS)
	cp runs/sweeps/central/results.csv book/tables/central.csv

seeds: venv                 ## the book's cpu recipe over three seeds (grids/book_seeds.yaml, one thread each) -> book/tables/book_seeds.csv
	$(PY) -m dualpath_book.sweep grids/book_seeds.yaml --out runs/sweeps --jobs 2 --restore book/tables $(SWEEP_ARGS)
	cp runs/sweeps/book_seeds/results.csv book/tables/book_seeds.csv

sync: venv                   ## write every notebook's parameters cell from dualpath_book.page.NOTEBOOK_PARAMETERS
	$(PY) -m dualpath_book.sync

ablations-smoke: venv       ## the sweep machinery on the mini splits, in a minute
	$(PY) -m dualpath_book.sweep grids/smoke.yaml --out runs/sweeps --jobs 2 $(SWEEP_ARGS)

clean-book:
	rm -rf _build
