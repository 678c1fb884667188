"""What running a sweep on Dask costs against the executor it replaced (a thread pool of child
processes, one per run): the smoke grid (four runs of the arm notebook on the mini splits) with the
old ``dualpath_book/sweep.py``, loaded from git history, and with today's ``dualpath_book.sweep``,
in this one process, one after the other, each into a folder of its own.

Both run the same copy of the grid without its ``returns`` key (which the old runner did not know),
read one feature cache, filled before either is timed, and give each run cores / jobs torch threads.
Printed per sweep: its wall time, the seconds its notebooks spent in ``run_arm`` (``train_s``, the
same measure under either executor), the rest (processes, kernels, imports, scheduling, records),
and the load average over it, which says how much else the machine was running; then new / old.

    python benchmarks/bench_sweep_executor.py             # --jobs 1: about 8 minutes on two cores
    python benchmarks/bench_sweep_executor.py --jobs 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from history import module_at   # benchmarks/history.py: python puts the script's folder on sys.path

OLD_COMMIT = "b839cbc"   # the last commit with lib/dualpath_book/sweep.py, the home-made executor
OLD_PATH = "lib/dualpath_book/sweep.py"
HERE = Path(__file__).resolve().parent
GRID = HERE.parent / "grids" / "smoke.yaml"


def old_sweep():
    """The old module; its child processes import it by its old name, so they load it from history too."""
    child = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from history import module_at; "
             f"module_at({OLD_COMMIT!r}, {OLD_PATH!r}, 'dualpath_book')._child_main()")
    return module_at(OLD_COMMIT, OLD_PATH, "dualpath_book",
                     edits={"from dualpath_book.sweep import _child_main; _child_main()": child})


def old_grid(folder: Path) -> Path:
    """The smoke grid as the old runner reads it: no ``returns``, the notebook by its full path."""
    grid = yaml.safe_load(GRID.read_text())
    del grid["returns"]
    grid["notebook"] = str((GRID.parent / grid["notebook"]).resolve())
    path = folder / GRID.name
    path.write_text(yaml.safe_dump(grid))
    return path


def timed(run_sweep, grid: Path, out: Path, jobs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    table = run_sweep(grid, out, jobs=jobs,
                      log=lambda line: print(f"  {time.perf_counter() - t0:6.1f} s  {line}", flush=True))
    wall = time.perf_counter() - t0
    if len(table) != 4 or (table["status"] != "done").any():
        raise SystemExit(f"the sweep into {out} did not finish its four runs:\n{table[['arm', 'seed', 'status']]}")
    training = float(table["train_s"].sum()) / jobs
    return {"wall": wall, "training": training, "rest": wall - training, "load": os.getloadavg()[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        os.environ["DUALPATH_CACHE"] = str(Path(tmp) / "cache")   # before either sweep starts a kernel
        os.environ.setdefault("DUALPATH_PROGRESS", "0")
        from dualpath.train.inputs import prepare
        from dualpath_book.ablation import arm_config
        from dualpath_book.sweep import run_sweep

        prepare(arm_config(smoke=True), log=lambda *a: None)   # the features both sweeps read
        grid = old_grid(Path(tmp))
        results = {}
        for name, sweep in (("old (child processes)", old_sweep().run_sweep), ("new (Dask LocalCluster)", run_sweep)):
            print(f"{name}, --jobs {args.jobs}:", flush=True)
            results[name] = timed(sweep, grid, Path(tmp) / name.split()[0], args.jobs)
    print(f"\nsmoke grid, 4 runs, --jobs {args.jobs}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(f"{'':26s} {'sweep s':>8s} {'run_arm s':>10s} {'rest s':>7s} {'load (5 min)':>13s}")
    for name, r in results.items():
        print(f"{name:26s} {r['wall']:8.1f} {r['training']:10.1f} {r['rest']:7.1f} {r['load']:13.2f}")
    old, new = results.values()
    print(f"new / old: sweep {new['wall'] / old['wall']:.3f}, rest {new['rest'] / old['rest']:.3f} "
          f"({(new['rest'] - old['rest']) / 4:+.1f} s per run)")


if __name__ == "__main__":   # the local cluster's workers import this module again; they must not run it
    main()
