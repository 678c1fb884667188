"""Papermill grid runner for ablations: arms x seeds, resumable, on Dask (this machine or a cluster).

A grid file names a notebook, shared parameters, arms and seeds (:mod:`.grid`); the sweep expands
it into runs, skips what is done, restores what was committed elsewhere (:mod:`.plan`), executes
the rest as Dask tasks (:mod:`.task`), on a local cluster by default or on any cluster given its
scheduler (:mod:`.execution`), and keeps one record per run and the table of them, ``results.csv``
(:mod:`.results`). The command line is :mod:`.cli`::

    python -m dualpath_book.sweep GRID.yaml --out runs/sweeps --jobs 2 [--only a,b] [--no-retry-failed]
                                  [--restore book/tables] [--scheduler tcp://HOST:8786] [--resources GPU=1]

Each run lives in its own folder::

    OUT/<grid>/grid.yaml              copy of the grid file of the latest sweep
    OUT/<grid>/results.csv            one row per finished run (see :func:`aggregate`)
    OUT/<grid>/<arm>/seed<k>/         the run's record and files (see :mod:`.results`)
"""
from .cli import main
from .execution import run_sweep
from .grid import Arm, Grid, load_grid
from .plan import Run, plan_runs, restore_runs, run_status
from .results import DONE, FAILED, STARTED, aggregate, read_metrics, record_from_row, summarise
from .task import RunFailed

__all__ = ["DONE", "FAILED", "STARTED", "Arm", "Grid", "Run", "RunFailed", "aggregate", "load_grid", "main",
           "plan_runs", "read_metrics", "record_from_row", "restore_runs", "run_status", "run_sweep", "summarise"]
