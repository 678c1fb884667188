"""What a sweep has to do: the runs of a grid, the state of each run folder, the runs a ``same_as``
arm copies, and the runs restored from a committed table.

Rerunning a sweep skips runs with ``DONE.json`` (unless their notebook or parameters changed since)
and retries failed runs from scratch (``retry_failed=False`` keeps them). A folder with
``STARTED.json`` but no final marker was interrupted: when its parameters and notebook are
unchanged the notebook runs again in the same folder, so a notebook that resumes (the trainer does,
from ``last.pt``) loses at most its last epoch; any other unfinished folder is deleted and redone.

Runs committed elsewhere. ``restore=DIR`` (CLI ``--restore DIR``) reads ``DIR/<grid>.csv``, a
sweep's ``results.csv`` copied unedited (``book/tables/``), for this grid and every grid a
``same_as`` names: a run with no folder here whose row there is done gets its ``DONE.json``
back from the row (with ``restored_from``), so a sweep spread over machines that do not keep
their run folders resumes from what was committed. A restored run has its record, not its
checkpoints: an arm that starts from its Stage I trains that phase itself (see ``run_arm``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from dualpath.errors import ConfigError
from dualpath.io import write_json_atomic

from .grid import REF, Arm, Grid
from .results import DONE, FAILED, STARTED, record_from_row

Log = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    grid: str
    arm: Arm
    seed: int
    dir: Path
    metrics: str
    returns: tuple[str, ...] = ()
    index: int = 0  # 1-based position in the sweep, for log lines
    total: int = 0

    @property
    def label(self) -> str:
        return f"[{self.index}/{self.total}] {self.arm.name} seed{self.seed}"

    @property
    def output_notebook(self) -> Path:
        return self.dir / self.arm.notebook.name

    def parameters(self) -> dict[str, Any]:
        """What papermill injects into the notebook (``"@<arm>"`` values become run folders)."""
        params = {k: str(self.sibling(v[len(REF):])) if isinstance(v, str) and v.startswith(REF) else v
                  for k, v in self.arm.params.items()}
        return {**params, "seed": self.seed, "run_dir": str(self.dir)}

    def sibling(self, arm: str) -> Path:
        """The folder of the same seed's run of ``arm`` (``<grid>/<arm>``: of another grid)."""
        grid, _, name = arm.rpartition("/")
        grids = self.dir.parents[2]
        return grids / (grid or self.grid) / name / self.dir.name

    def record(self) -> dict[str, Any]:
        """What the run is, for its marker: the sweep's side of its record."""
        return {"grid": self.grid, "arm": self.arm.name, "seed": self.seed, "params": self.arm.params,
                "notebook": self.arm.notebook_label, "notebook_path": str(self.arm.notebook),
                "run_dir": str(self.dir), "metrics_file": self.metrics}

    def rebased(self, old: Path, new: Path) -> Run:
        """This run in a checkout at ``new`` instead of ``old``: its folder and notebook move with it
        where they lie inside the checkout (a worker's clone may sit elsewhere than the sweep's)."""
        def move(path: Path) -> Path:
            return new / path.relative_to(old) if path.is_relative_to(old) else path
        return dataclasses.replace(self, dir=move(self.dir),
                                   arm=dataclasses.replace(self.arm, notebook=move(self.arm.notebook)))


def plan_runs(grid: Grid, out_root: str | os.PathLike, only: Sequence[str] | None = None) -> list[Run]:
    """Expand arms x seeds (in grid order) into runs under ``out_root/<grid name>``."""
    arms = list(grid.arms)
    if only:
        known = [a.name for a in arms]
        unknown = [name for name in only if name not in known]
        if unknown:
            raise ConfigError(f"{grid.path}: --only names unknown arm(s) {unknown} (arms: {', '.join(known)})")
        arms = [a for a in arms if a.name in only]
    grid_dir = Path(out_root).resolve() / grid.name
    pairs = [(arm, seed) for arm in arms for seed in grid.seeds]
    return [Run(grid=grid.name, arm=arm, seed=seed, dir=grid_dir / arm.name / f"seed{seed}",
                metrics=grid.metrics, returns=grid.returns, index=i, total=len(pairs))
            for i, (arm, seed) in enumerate(pairs, 1)]


def run_status(run: Run) -> str:
    """``done``, ``failed``, ``stale`` (finished with other settings), ``interrupted`` (unfinished,
    same settings: resumable in place), ``partial`` (unfinished, settings unknown or other) or ``new``."""
    for marker, state in ((DONE, "done"), (FAILED, "failed"), (STARTED, "interrupted")):
        path = run.dir / marker
        if path.is_file():
            try:
                recorded = json.loads(path.read_text())
            except ValueError:
                return "partial"
            if not isinstance(recorded, dict):
                return "partial"
            same = (recorded.get("params") == run.arm.params
                    and recorded.get("notebook") == run.arm.notebook_label)
            if state == "interrupted":
                return state if same else "partial"
            return state if same else "stale"
    return "partial" if run.dir.exists() else "new"


def should_run(run: Run, retry_failed: bool, log: Log) -> bool:
    state = run_status(run)
    if state == "done" or (state == "failed" and not retry_failed):
        log(f"{run.label}: skipped ({state} earlier)")
        return False
    if state == "interrupted":
        log(f"{run.label}: resuming (interrupted earlier)")
    elif state in ("stale", "partial"):
        why = "notebook or parameters changed" if state == "stale" else "unfinished, settings unknown"
        log(f"{run.label}: redoing ({why})")
    return True


def sources_done(run: Run, log: Log) -> bool:
    # wave one has run (or redone) every source by now: a DONE marker is its final state
    waiting = [a for a in run.arm.needs if not (run.sibling(a) / DONE).is_file()]
    if waiting:
        log(f"{run.label}: waiting (needs {', '.join(waiting)} seed{run.seed} done first)")
    return not waiting


def copy_same_run(run: Run, log: Log, quiet: bool = True) -> bool:
    """An arm that is another run: copy that run's record once it is done with this arm's
    settings. Returns whether that is settled: copied, or refused because the source ran other
    settings (said in the log); ``quiet``: no word while the source is not done yet."""
    source = run.sibling(run.arm.same_as)
    marker = source / DONE
    if not marker.is_file():
        if not quiet:
            log(f"{run.label}: waiting (same run as {run.arm.same_as} seed{run.seed}, not done yet)")
        return False
    record = json.loads(marker.read_text())
    if record.get("params") != run.arm.params or record.get("notebook") != run.arm.notebook_label:
        log(f"{run.label}: not copied: {run.arm.same_as} seed{run.seed} ran {record.get('params')} "
            f"with {record.get('notebook')}, this arm asks for {run.arm.params} with {run.arm.notebook_label}")
        return True   # said once; a rerun of the sweep says it again
    run.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.dir / DONE, {**record, "grid": run.grid, "arm": run.arm.name,
                                       "same_as": f"{source.parents[1].name}/{source.parent.name}/{source.name}",
                                       "run_dir": str(source)})
    log(f"{run.label}: same run as {run.arm.same_as} seed{run.seed}: its record copied")
    return True


def restore_runs(runs: Sequence[Run], tables: str | os.PathLike, log: Log = print) -> int:
    """Write back the ``DONE.json`` of every run (and of every run a ``same_as`` arm is) that has
    no folder here but a done row in ``tables/<grid>.csv``; returns how many were restored."""
    tables = Path(tables)
    if not tables.is_dir():
        raise ConfigError(f"--restore {tables}: no such folder (it holds the committed results "
                          f"tables, <grid>.csv, e.g. book/tables)")
    wanted: dict[Path, tuple[str, str, int]] = {}
    for run in runs:
        wanted[run.dir] = (run.grid, run.arm.name, run.seed)
        if run.arm.same_as is not None:
            grid, _, arm = run.arm.same_as.rpartition("/")
            wanted[run.sibling(run.arm.same_as)] = (grid or run.grid, arm, run.seed)
    rows: dict[str, dict[tuple[str, int], pd.Series]] = {}
    restored = 0
    for folder, (grid, arm, seed) in wanted.items():
        if folder.exists():
            continue   # a folder here is this machine's truth, whatever the table says
        if grid not in rows:
            rows[grid] = _done_rows(tables / f"{grid}.csv")
        row = rows[grid].get((arm, seed))
        if row is None:
            continue
        folder.mkdir(parents=True)
        write_json_atomic(folder / DONE, {**record_from_row(row), "run_dir": str(folder),
                                          "restored_from": (tables / f"{grid}.csv").as_posix()})
        restored += 1
    if restored:
        log(f"restored {restored} finished run(s) from the tables in {tables}")
    return restored


def _done_rows(path: Path) -> dict[tuple[str, int], pd.Series]:
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"{path}: not a results table ({e}); restore it from git or drop --restore") from None
    missing = {"arm", "seed", "status"} - set(table.columns)
    if missing:
        raise ConfigError(f"{path}: not a sweep's results.csv (no column {', '.join(sorted(missing))})")
    done = table[table["status"] == "done"]
    return {(str(r["arm"]), int(r["seed"])): r for _, r in done.iterrows()}
