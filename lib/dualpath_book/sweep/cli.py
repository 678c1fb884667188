"""``python -m dualpath_book.sweep GRID.yaml``: a sweep from the command line.

    python -m dualpath_book.sweep GRID.yaml --out runs/sweeps [--jobs 2] [--only a,b] [--no-retry-failed]
                                  [--restore book/tables] [--scheduler tcp://HOST:8786] [--resources GPU=1]

The exit code is 0 when every run of the grid (of ``--only``) is done, 1 when one failed or
waits, 2 on bad input and 130 when interrupted.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
from typing import Any, Sequence

from dualpath.errors import ConfigError, DualPathError

from .execution import run_sweep
from .grid import load_grid


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dualpath_book.sweep``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m dualpath_book.sweep",
                                     description="run a grid of notebooks (arms x seeds) on Dask, resumably")
    parser.add_argument("grid", help="grid file (YAML)")
    parser.add_argument("--out", default="runs/sweeps", help="root folder of sweeps (default: runs/sweeps)")
    parser.add_argument("--jobs", type=int, help="runs at a time on this machine's local cluster (default: 1)")
    parser.add_argument("--only", help="comma-separated arm names to run")
    parser.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                        help="keep failed runs as they are instead of rerunning them")
    parser.add_argument("--restore", metavar="DIR",
                        help="folder of committed results tables (<grid>.csv, e.g. book/tables): "
                             "runs done there and absent here count as done")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a Dask scheduler (tcp://host:8786) whose workers run the grid; default: "
                             "$DASK_SCHEDULER_ADDRESS, else a local cluster of --jobs workers")
    parser.add_argument("--resources", metavar="NAME=AMOUNT[,...]",
                        help="what each run takes of its worker, e.g. GPU=1 (workers started with "
                             "--resources GPU=1 then train one run at a time)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    only = [a.strip() for a in args.only.split(",") if a.strip()] if args.only else None

    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops the runs like Ctrl-C does
    try:
        grid = load_grid(args.grid)
        table = run_sweep(args.grid, args.out, jobs=args.jobs, only=only, retry_failed=args.retry_failed,
                          log=lambda line: print(line, flush=True), restore=args.restore,
                          scheduler=args.scheduler, resources=parse_resources(args.resources),
                          command=shlex.join(["python", "-m", "dualpath_book.sweep", *argv]))
    except DualPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the next sweep resumes unfinished runs", file=sys.stderr)
        return 130
    planned = {a.name for a in grid.arms if not only or a.name in only}
    ours = table[table["arm"].isin(planned)] if len(table) else table
    return 1 if len(ours) and (ours["status"] != "done").any() else 0


def parse_resources(text: str | None) -> dict[str, float]:
    """``"GPU=1,MEMORY=8e9"`` (or space-separated, as ``dask worker --resources`` takes them)."""
    resources: dict[str, float] = {}
    for item in (text or "").replace(",", " ").split():
        name, _, amount = item.partition("=")
        try:
            resources[name] = float(amount)
        except ValueError:
            name = ""
        if not name:
            raise ConfigError(f"--resources {text!r}: {item!r} is not NAME=AMOUNT (e.g. GPU=1)")
    return resources


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
