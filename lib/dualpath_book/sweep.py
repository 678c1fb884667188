"""Papermill grid runner for ablations: arms x seeds, resumable, several at a time.

A grid file (YAML) names notebooks, shared parameters, arms and seeds::

    name: smoke                           # folder under --out; default: the file's stem
    notebook: ../notebooks/02_stage1.ipynb  # default notebook; an arm may override it
    seeds: [0, 1, 2]
    base: {smoke: true, epochs: 1}        # parameters shared by every arm
    arms:
      - name: ranking_only
        params: {stage: ranking}
      - name: paper
        notebook: ../notebooks/03_stage2.ipynb
        params: {lr: 0.001}
    metrics: metrics.json                 # flat JSON dict each run writes into its run_dir

Two arm keys say that runs depend on each other (every seed pairs with the same seed):

* a parameter value ``"@<arm>"`` is replaced by that arm's run folder, and the run waits until
  that run is done (e.g. ``stage1_from: "@loss-paper"``: start from its Stage I);
* ``same_as: <arm>`` or ``same_as: <grid>/<arm>`` (a grid under the same ``--out``): the arm *is*
  that run under another name, so it is not run again; once the source is done its record is
  copied into the arm's folder, with ``same_as`` naming the source. The source must have been
  run with exactly this arm's parameters and notebook.

Relative notebook paths are looked up beside the grid file, then from the repository
root holding it. Each run gets the parameters ``base | arm.params | {seed, run_dir}``
and lives in its own folder::

    OUT/<grid>/grid.yaml              copy of the grid file of the latest sweep
    OUT/<grid>/results.csv            one row per finished run (see :func:`aggregate`)
    OUT/<grid>/<arm>/seed<k>/
        <notebook>.ipynb              the executed notebook
        papermill.log                 kernel output and, on failure, the traceback
        metrics.json                  written by the notebook
        STARTED.json                  written first: parameters and notebook of the run
        DONE.json | FAILED.json       written last: parameters, metrics, wall time, provenance

Runs committed elsewhere. ``restore=DIR`` (CLI ``--restore DIR``) reads ``DIR/<grid>.csv``, a
sweep's ``results.csv`` copied unedited (``book/tables/``), for this grid and every grid a
``same_as`` names: a run with no folder here whose row there is done gets its ``DONE.json``
back from the row (with ``restored_from``), so a sweep spread over machines that do not keep
their run folders resumes from what was committed. A restored run has its record, not its
checkpoints: an arm that starts from its Stage I trains that phase itself (see ``run_arm``).

Rerunning a sweep skips runs with ``DONE.json`` (unless their notebook or parameters
changed since) and retries failed runs from scratch (``retry_failed=False`` keeps them).
A folder with ``STARTED.json`` but no final marker was interrupted: when its parameters and
notebook are unchanged the notebook runs again in the same folder, so a notebook that
resumes (the trainer does, from ``last.pt``) loses at most its last epoch; any other
unfinished folder is deleted and redone.

CLI::

    python -m dualpath_book.sweep GRID.yaml --out runs/sweeps --jobs 2 [--only a,b] [--no-retry-failed]
                                  [--restore book/tables]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import yaml

from dualpath.errors import ConfigError, DualPathError
from dualpath.evaluate import round_metrics
from dualpath.hardware import cpu_name
from dualpath.io import atomic_path, write_json_atomic, write_text_atomic

from .notebook_run import notebook_parameters, run_notebook

STARTED = "STARTED.json"
DONE = "DONE.json"
FAILED = "FAILED.json"
LOG = "papermill.log"
RESULTS = "results.csv"
GRID_COPY = "grid.yaml"
RESERVED_PARAMS = ("seed", "run_dir")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_GRID_KEYS = {"name", "description", "notebook", "seeds", "base", "arms", "metrics",
              "families", "reference", "budget"}   # the last three: read by ablation_report (the chapter), not by the runner
_ARM_KEYS = {"name", "description", "notebook", "params", "same_as"}
_REF = "@"   # a parameter value "@<arm>": that arm's run folder of the same seed
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOG_TAIL_LINES = 40

Log = Callable[[str], None]


# --------------------------------------------------------------------------- grid file


@dataclass(frozen=True)
class Arm:
    name: str
    notebook: Path  # resolved, absolute
    notebook_label: str  # as written in the grid file: what staleness is judged on
    params: dict[str, Any]
    same_as: str | None = None   # '<arm>' or '<grid>/<arm>': this arm is that run, not run again

    @property
    def needs(self) -> tuple[str, ...]:
        """Arms whose run of the same seed this arm's parameters name (``"@<arm>"``)."""
        return tuple(v[len(_REF):] for v in self.params.values() if isinstance(v, str) and v.startswith(_REF))


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    seeds: tuple[int, ...]
    arms: tuple[Arm, ...]
    metrics: str


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and validate a grid file; every problem is a ConfigError naming the file and key."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"grid file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    where = _Where(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(_GRID_KEYS)}")
    where.check_keys(raw, _GRID_KEYS, "")
    if "arms" not in raw:
        raise where.error("arms", "is required")

    name = _safe_name(where, "name", raw.get("name", path.stem))
    _typed(where, "description", raw.get("description", ""), str)
    seeds = _seeds(where, raw.get("seeds", [0]))
    base = _params(where, "base", raw.get("base") or {})
    metrics = _metrics_name(where, raw.get("metrics", "metrics.json"))
    default_nb = raw.get("notebook")
    if default_nb is not None:
        _typed(where, "notebook", default_nb, str)

    arms_raw = _typed(where, "arms", raw["arms"], list)
    if not arms_raw:
        raise where.error("arms", "needs at least one arm")
    arms = [_arm(where, i, a, base, default_nb) for i, a in enumerate(arms_raw)]
    seen: dict[str, int] = {}
    for i, arm in enumerate(arms):
        if arm.name in seen:
            raise where.error(f"arms[{i}].name", f"duplicate arm name {arm.name!r} (also arms[{seen[arm.name]}])")
        seen[arm.name] = i
    _check_links(where, arms, name)
    return Grid(path=path, name=name, seeds=seeds, arms=tuple(arms), metrics=metrics)


def _check_links(where: "_Where", arms: list[Arm], grid_name: str) -> None:
    """``"@<arm>"`` and ``same_as`` name arms that run themselves: one level, no cycles."""
    by_name = {a.name: a for a in arms}
    for i, arm in enumerate(arms):
        for ref in arm.needs:
            target = by_name.get(ref)
            if target is None or target is arm or target.needs or target.same_as:
                why = ("is not an arm of this grid" if target is None else "is this arm itself"
                       if target is arm else "depends on another run itself")
                raise where.error(f"arms[{i}].params", f"'{_REF}{ref}' {why}; name an arm that runs on its own")
        if arm.same_as is None:
            continue
        if arm.needs:
            raise where.error(f"arms[{i}].same_as", "an arm that is another run has no parameters of its own to resolve")
        grid, _, other = arm.same_as.rpartition("/")
        if grid in ("", grid_name):
            target = by_name.get(other)
            if target is None or target is arm or target.same_as or target.needs:
                raise where.error(f"arms[{i}].same_as", f"{arm.same_as!r} must name another arm of this grid "
                                                        f"that runs on its own")
            if target.params != arm.params or target.notebook_label != arm.notebook_label:
                raise where.error(f"arms[{i}].same_as", f"arm {other!r} runs other parameters or another "
                                                        f"notebook than {arm.name!r}; they are not the same run")


@dataclass(frozen=True)
class _Where:
    """Formats errors as '<grid file>: key <dotted.key>: <problem>'."""

    path: Path

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{key}': {problem}")

    def check_keys(self, mapping: dict, allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.error(f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(where: _Where, key: str, value: Any, kind: type) -> Any:
    # bool is an int subclass; a seed or count of `true` is always a typo
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise where.error(key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _safe_name(where: _Where, key: str, value: Any) -> str:
    """Arm and grid names become folder names, so only a portable alphabet is allowed."""
    _typed(where, key, value, str)
    if not _SAFE_NAME.fullmatch(value):
        raise where.error(key, f"{value!r} is not a safe folder name (letters, digits, '_', '-', '.'; "
                               "starting with a letter or digit; at most 100 characters)")
    return value


def _seeds(where: _Where, value: Any) -> tuple[int, ...]:
    _typed(where, "seeds", value, list)
    if not value:
        raise where.error("seeds", "needs at least one seed")
    for i, seed in enumerate(value):
        _typed(where, f"seeds[{i}]", seed, int)
    if len(set(value)) != len(value):
        raise where.error("seeds", f"has duplicates: {value}")
    return tuple(value)


def _params(where: _Where, key: str, value: Any) -> dict[str, Any]:
    _typed(where, key, value, dict)
    for name, v in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise where.error(f"{key}.{name}", "parameter names must be Python identifiers")
        if name in RESERVED_PARAMS:
            raise where.error(f"{key}.{name}", f"is set by the sweep itself (reserved: {', '.join(RESERVED_PARAMS)})")
        try:
            # parameters are stored in JSON markers and compared on rerun
            if json.loads(json.dumps(v)) != v:
                raise TypeError("does not survive a JSON round trip")
        except (TypeError, ValueError) as e:
            raise where.error(f"{key}.{name}", f"value {v!r} is not plain JSON data ({e})") from None
    return dict(value)


def _metrics_name(where: _Where, value: Any) -> str:
    _typed(where, "metrics", value, str)
    rel = Path(value)
    if rel.is_absolute() or ".." in rel.parts or not value.strip():
        raise where.error("metrics", f"{value!r} must be a file name relative to the run folder")
    return value


def _arm(where: _Where, i: int, raw: Any, base: dict, default_nb: str | None) -> Arm:
    key = f"arms[{i}]"
    _typed(where, key, raw, dict)
    where.check_keys(raw, _ARM_KEYS, f"{key}.")
    if "name" not in raw:
        raise where.error(f"{key}.name", "is required")
    name = _safe_name(where, f"{key}.name", raw["name"])
    _typed(where, f"{key}.description", raw.get("description", ""), str)
    params = _params(where, f"{key}.params", raw.get("params") or {})
    label = raw.get("notebook", default_nb)
    if label is None:
        raise where.error(f"{key}.notebook", f"arm {name!r} has no notebook and the grid sets no default 'notebook'")
    nb_key = f"{key}.notebook" if "notebook" in raw else "notebook"
    notebook = _resolve_notebook(where, nb_key, _typed(where, nb_key, label, str))
    origin = {**{k: "base" for k in base}, **{k: f"{key}.params" for k in params}}
    _check_parameters(where, nb_key, notebook, origin)
    same_as = raw.get("same_as")
    if same_as is not None:
        _typed(where, f"{key}.same_as", same_as, str)
        parts = same_as.split("/")
        if len(parts) > 2 or not all(_SAFE_NAME.fullmatch(p) for p in parts):
            raise where.error(f"{key}.same_as", f"{same_as!r} must be '<arm>' or '<grid>/<arm>'")
    return Arm(name=name, notebook=notebook, notebook_label=label, params={**base, **params}, same_as=same_as)


def _resolve_notebook(where: _Where, key: str, label: str) -> Path:
    """Look beside the grid file, then from the repository root, so both styles work."""
    candidates = [where.path.parent / label]
    root = _repo_root(where.path.parent)
    if root is not None:
        candidates.append(root / label)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise where.error(key, f"notebook {label!r} not found (looked for {tried})")


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _check_parameters(where: _Where, nb_key: str, notebook: Path, origin: dict[str, str]) -> None:
    """Fail before any kernel starts if a parameter would be silently ignored (a typo)."""
    try:
        declared = notebook_parameters(notebook)
    except ConfigError as e:
        raise where.error(nb_key, str(e)) from None
    for name in (*RESERVED_PARAMS, *origin):
        if name not in declared:
            key = f"{origin[name]}.{name}" if name in origin else nb_key
            raise where.error(key, f"notebook {notebook} declares no parameter {name!r} in its "
                                   f"'parameters' cell (it declares: {', '.join(declared) or 'nothing'})")


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    grid: str
    arm: Arm
    seed: int
    dir: Path
    metrics: str
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
        params = {k: str(self.sibling(v[len(_REF):])) if isinstance(v, str) and v.startswith(_REF) else v
                  for k, v in self.arm.params.items()}
        return {**params, "seed": self.seed, "run_dir": str(self.dir)}

    def sibling(self, arm: str) -> Path:
        """The folder of the same seed's run of ``arm`` (``<grid>/<arm>``: of another grid)."""
        grid, _, name = arm.rpartition("/")
        grids = self.dir.parents[2]
        return grids / (grid or self.grid) / name / self.dir.name


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
                metrics=grid.metrics, index=i, total=len(pairs))
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


# --------------------------------------------------------------------------- sweep


def run_sweep(grid_path: str | os.PathLike, out_root: str | os.PathLike, jobs: int = 1,
              only: Sequence[str] | None = None, retry_failed: bool = True, log: Log = print,
              command: str | None = None, restore: str | os.PathLike | None = None) -> pd.DataFrame:
    """Run every pending run of a grid, ``jobs`` at a time, and return :func:`aggregate`'s table.

    Finished runs are skipped; failed runs are retried unless ``retry_failed`` is False;
    interrupted runs continue in their folder when their settings are unchanged and are
    redone otherwise. A failing run never stops the others. ``restore``: a folder of committed
    results tables (see the module's docstring); ``results.csv`` is rewritten after every run.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    grid = load_grid(grid_path)
    runs = plan_runs(grid, out_root, only)
    grid_dir = Path(out_root).resolve() / grid.name
    command = command or (f"run_sweep({str(grid_path)!r}, {str(out_root)!r}, jobs={jobs}, "
                          f"only={list(only) if only else None}, retry_failed={retry_failed}"
                          + (f", restore={str(restore)!r})" if restore is not None else ")"))
    log = _serialised(log)
    with _exclusive(grid_dir):
        for stray in grid_dir.glob(".*.tmp"):  # left by a sweep killed while writing results.csv
            stray.unlink()
        write_text_atomic(grid_dir / GRID_COPY, grid.path.read_text())
        if restore is not None:
            restore_runs(runs, restore, log)
        todo = [run for run in runs if _should_run(run, retry_failed, log)]
        # aliases of runs done already are copied now, the others as soon as their run is done
        # (so results.csv has them from then on); the runs that need no other run go first
        aliases = [r for r in todo if r.arm.same_as is not None and not _copy_same_run(r, log)]
        executor = _Executor(jobs, _provenance(grid.path, command), log, grid_dir, aliases)
        executor.run_all([r for r in todo if not r.arm.needs and r.arm.same_as is None])
        executor.run_all([r for r in todo if r.arm.needs and _sources_done(r, log)])
        for run in executor.aliases:   # their runs are not done: say so
            _copy_same_run(run, log, quiet=False)
        table = aggregate(grid_dir)
    log(f"results: {grid_dir / RESULTS}  ({_status_counts(table, {r.arm.name for r in runs})})")
    return table


def _status_counts(table: pd.DataFrame, arms: set[str]) -> str:
    if not len(table):
        return "no runs"
    counts = table[table["arm"].isin(arms)]["status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _should_run(run: Run, retry_failed: bool, log: Log) -> bool:
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


def _sources_done(run: Run, log: Log) -> bool:
    # wave one has run (or redone) every source by now: a DONE marker is its final state
    waiting = [a for a in run.arm.needs if not (run.sibling(a) / DONE).is_file()]
    if waiting:
        log(f"{run.label}: waiting (needs {', '.join(waiting)} seed{run.seed} done first)")
    return not waiting


def _copy_same_run(run: Run, log: Log, quiet: bool = True) -> bool:
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


def record_from_row(row: pd.Series) -> dict[str, Any]:
    """The ``DONE.json`` record a row of :func:`aggregate` came from (the inverse of its row:
    the row of the record is the row again); empty cells were keys the run did not have."""
    def plain(value: Any) -> Any:
        return value.item() if hasattr(value, "item") else value

    cells = {k: plain(v) for k, v in row.items() if not (isinstance(v, float) and v != v)}
    record: dict[str, Any] = {k: cells[k] for k in _FIRST + _LAST if k in cells}
    record["params"] = {k[len("param_"):]: _json_cell(v) for k, v in cells.items() if k.startswith("param_")}
    record["metrics"] = {}
    for key, value in cells.items():
        if key in record or key.startswith("param_"):
            continue
        name = key[len("metric_"):] if key.startswith("metric_") else key
        record["metrics"][name] = value
    return record


def _json_cell(value: Any) -> Any:
    # _row writes list and dict parameters as JSON; every other parameter is its own cell
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _serialised(log: Log) -> Log:
    """Worker threads share one log; keep their lines whole."""
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            log(line)
    return locked


@contextmanager
def _exclusive(grid_dir: Path) -> Iterator[None]:
    """Two sweeps writing one grid folder would delete each other's runs as 'partial'."""
    import fcntl  # POSIX only; so is papermill's kernel handling the sweep relies on

    grid_dir.mkdir(parents=True, exist_ok=True)
    with open(grid_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DualPathError(f"another sweep is running in {grid_dir}; wait for it or stop it") from None
        yield  # the lock dies with the process, so a killed sweep never blocks the next one


def _provenance(grid_path: Path, command: str) -> dict[str, Any]:
    return {"commit": _git_commit(grid_path.parent), "machine": _machine(), "command": command,
            "python": platform.python_version(), "papermill": _version("papermill"),
            "torch": _version("torch")}


def _git_commit(folder: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        # untracked files are ignored: sweep outputs inside the repo would always count
        return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    return f"{platform.node()} | {cpu_name()} | {_cores()} cpus"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the host's
    except AttributeError:
        return os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)  # without importing it: torch alone takes seconds
    except metadata.PackageNotFoundError:
        return ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Executor:
    """Runs each notebook in a child process, ``jobs`` at a time, from a thread pool."""

    jobs: int
    provenance: dict[str, Any]
    log: Log
    grid_dir: Path | None = None   # its results.csv is rewritten after each run
    aliases: list[Run] = field(default_factory=list)   # same_as arms still waiting for their run
    _stop: threading.Event = field(default_factory=threading.Event)
    _children: set[subprocess.Popen] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_all(self, runs: list[Run]) -> None:
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            for future in as_completed([pool.submit(self._run_one, run) for run in runs]):
                future.result()
        except BaseException:
            # Ctrl-C or a bug: stop everything; interrupted runs keep only STARTED.json, so
            # the next sweep resumes them
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with self._lock:
                for child in self._children:
                    child.terminate()
            raise
        finally:
            pool.shutdown(wait=True)

    def _env(self) -> dict[str, str]:
        threads = str(max(1, _cores() // self.jobs))
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        # the child and its kernel must import this very package, installed or not
        lib = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p)
        return env

    def _run_one(self, run: Run) -> None:
        if self._stop.is_set():
            return
        resuming = run_status(run) == "interrupted"
        if not resuming:
            shutil.rmtree(run.dir, ignore_errors=True)
            run.dir.mkdir(parents=True)
            write_json_atomic(run.dir / STARTED, {"params": run.arm.params, "notebook": run.arm.notebook_label,
                                                  "started_at": _now()})
        self.log(f"{run.label}: started")
        started_at, t0 = _now(), time.monotonic()
        returncode = self._execute(run, append=resuming)
        if self._stop.is_set():
            return
        wall_s = round(time.monotonic() - t0, 2)
        record = {"grid": run.grid, "arm": run.arm.name, "seed": run.seed, "params": run.arm.params,
                  "notebook": run.arm.notebook_label, "notebook_path": str(run.arm.notebook),
                  "run_dir": str(run.dir), "metrics_file": run.metrics, "wall_s": wall_s,
                  "started_at": started_at, "resumed": resuming, **self.provenance}
        error = _failure(run, returncode)
        metrics: dict[str, Any] = {}
        if error is None:
            try:
                metrics = read_metrics(run.dir / run.metrics)
            except DualPathError as e:
                error = str(e)
        record.update(metrics=metrics, finished_at=_now())
        if error is None:
            write_json_atomic(run.dir / DONE, {**record, "status": "done"})
            self.log(f"{run.label}: done in {wall_s:.1f} s")
        else:
            tail = _log_tail(run.dir / LOG)
            write_json_atomic(run.dir / FAILED, {**record, "status": "failed", "error": error, "log_tail": tail})
            self.log(f"{run.label}: failed in {wall_s:.1f} s: {error}  (log: {run.dir / LOG})")
        with self._lock:
            if error is None:
                for alias in [a for a in self.aliases if a.sibling(a.arm.same_as) == run.dir]:
                    _copy_same_run(alias, self.log)
                    self.aliases.remove(alias)
            if self.grid_dir is not None:   # the table is current while the sweep runs: commit results as they come
                aggregate(self.grid_dir)

    def _execute(self, run: Run, append: bool) -> int:
        spec = {"notebook": str(run.arm.notebook), "output": str(run.output_notebook),
                "parameters": run.parameters(), "parent_pid": os.getpid()}
        with open(run.dir / LOG, "ab" if append else "wb") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-c", "from dualpath_book.sweep import _child_main; _child_main()"],
                stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT, env=self._env())
            with self._lock:
                self._children.add(child)
            try:
                child.communicate(json.dumps(spec).encode())
            finally:
                with self._lock:
                    self._children.discard(child)
        return child.returncode


def _failure(run: Run, returncode: int) -> str | None:
    if returncode == 0:
        return None
    if returncode < 0:
        return f"notebook process killed by signal {signal.Signals(-returncode).name}"
    lines = _log_tail(run.dir / LOG)
    return lines[-1] if lines else f"notebook process exited with code {returncode}"


def _log_tail(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [ln.rstrip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return lines[-_LOG_TAIL_LINES:]


def read_metrics(path: Path) -> dict[str, Any]:
    """The run's metrics as one flat dict; nested dicts become dotted keys (``r1.i2t``)."""
    if not path.is_file():
        raise DualPathError(f"the notebook finished but wrote no {path.name} in its run_dir {path.parent}")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise DualPathError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DualPathError(f"{path} must hold a JSON object of metrics, got {type(data).__name__}")
    return _flatten(data)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


# --------------------------------------------------------------------------- child process


def _child_main() -> None:
    """Execute one notebook (spec on stdin); the last line of output on failure is the error."""
    spec = json.load(sys.stdin)
    _die_with_parent(spec["parent_pid"])
    # on Ctrl-C the sweep decides: it stops this process and leaves the run unmarked
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import logging

    from papermill.exceptions import PapermillExecutionError

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        run_notebook(spec["notebook"], spec["output"], spec["parameters"], log_output=True)
    except PapermillExecutionError as e:
        print(_ANSI.sub("", "\n".join(e.traceback)), flush=True)
        print(f"{e.ename}: {e.evalue}", flush=True)
        sys.exit(1)
    except Exception as e:  # kernel death, unreadable notebook, ...: report, don't hide
        import traceback

        traceback.print_exc(file=sys.stdout)
        print(f"{type(e).__name__}: {e}", flush=True)
        sys.exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """A SIGKILLed sweep must not leave notebooks running: they would write into folders
    the next sweep is redoing. The kernel itself already exits when this process does
    (ipykernel polls its parent)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


# --------------------------------------------------------------------------- results

_FIRST = ["grid", "arm", "seed"]
_LAST = ["status", "error", "same_as", "wall_s", "resumed", "commit", "machine", "command", "python", "papermill", "torch",
         "notebook", "run_dir", "started_at", "finished_at"]


def aggregate(grid_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run under ``grid_dir``; also written atomically to ``results.csv``.

    Every run folder with a DONE or FAILED marker counts, including arms since removed
    from the grid file (delete their folders to drop them).

    Columns: grid, arm, seed, ``param_<name>`` per parameter, one per metric (``metric_<name>``
    if it would clash with another column), then status, error, wall_s (seconds of the last
    start: a resumed run's earlier starts are not in it), resumed and provenance.
    """
    grid_dir = Path(grid_dir)
    rows = []
    for marker in sorted(grid_dir.glob(f"*/seed*/{DONE}")) + sorted(grid_dir.glob(f"*/seed*/{FAILED}")):
        try:
            rows.append(_row(json.loads(marker.read_text()), marker.parent, grid_dir))
        except ValueError:
            continue  # a marker is written atomically; a corrupt one was edited by hand
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["arm", "seed"], kind="stable").reset_index(drop=True)
        params = [c for c in table.columns if c.startswith("param_")]
        metrics = [c for c in table.columns if c not in {*_FIRST, *_LAST, *params}]
        table = table[_FIRST + params + metrics + [c for c in _LAST if c in table.columns]]
        if table["same_as"].isna().all():   # no arm of this grid is another run
            table = table.drop(columns="same_as")
    with atomic_path(grid_dir / RESULTS) as tmp:
        table.to_csv(tmp, index=False)
    return table


def _row(record: dict[str, Any], run_dir: Path, grid_dir: Path) -> dict[str, Any]:
    row = {key: record.get(key) for key in _FIRST + _LAST}
    row["run_dir"] = run_dir.relative_to(grid_dir).as_posix()
    for name, value in record.get("params", {}).items():
        row[f"param_{name}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    # rounded to what a recall carries: no float noise of sums (234.90000000000003) in the tables
    for name, value in round_metrics(record.get("metrics", {})).items():
        row[f"metric_{name}" if name in row or name.startswith("param_") else name] = value
    return row


def summarise(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per arm over finished runs."""
    if metric not in table.columns:
        raise KeyError(f"no column {metric!r} in the results (columns: {', '.join(table.columns)})")
    done = table[table["status"] == "done"]
    return done.groupby("arm", sort=False)[metric].agg(["mean", "std", "count"]).rename(columns={"count": "n"})


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dualpath_book.sweep``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m dualpath_book.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("grid", help="grid file (YAML)")
    parser.add_argument("--out", default="runs/sweeps", help="root folder of sweeps (default: runs/sweeps)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at a time (default: 1)")
    parser.add_argument("--only", help="comma-separated arm names to run")
    parser.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                        help="keep failed runs as they are instead of rerunning them")
    parser.add_argument("--restore", metavar="DIR",
                        help="folder of committed results tables (<grid>.csv, e.g. book/tables): "
                             "runs done there and absent here count as done")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    only = [a.strip() for a in args.only.split(",") if a.strip()] if args.only else None

    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops children like Ctrl-C does
    try:
        grid = load_grid(args.grid)
        table = run_sweep(args.grid, args.out, jobs=args.jobs, only=only, retry_failed=args.retry_failed,
                          log=lambda line: print(line, flush=True), restore=args.restore,
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


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
