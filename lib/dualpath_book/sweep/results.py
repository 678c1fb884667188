"""A sweep's records and its table: the markers of a run folder, ``results.csv`` and its provenance.

A run folder ``OUT/<grid>/<arm>/seed<k>/`` on the machine of the sweep holds::

    STARTED.json          written first, where the run executes: its parameters and notebook
    DONE.json | FAILED.json   written last, by the sweep: parameters, metrics, wall time, provenance
    <metrics>, <returns>  the files of the grid's ``metrics`` and ``returns``, sent back by the worker

and, where the run executed (the same folder when the worker shares the sweep's disk): the executed
notebook, ``papermill.log`` (kernel output and, on failure, the traceback) and any checkpoints.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from dualpath.errors import DualPathError
from dualpath.evaluate import round_metrics
from dualpath.hardware import cpu_name
from dualpath.io import atomic_path, write_json_atomic

STARTED = "STARTED.json"
DONE = "DONE.json"
FAILED = "FAILED.json"
LOG = "papermill.log"
RESULTS = "results.csv"
_FIRST = ["grid", "arm", "seed"]
_LAST = ["status", "error", "same_as", "wall_s", "resumed", "commit", "machine", "command", "python", "papermill", "torch",
         "notebook", "run_dir", "started_at", "finished_at"]


def write_record(run_dir: Path, record: dict[str, Any], files: dict[str, bytes]) -> None:
    """The sweep's side of a finished run: its files, then its marker (DONE or FAILED by its status),
    each written atomically; the marker of an earlier attempt goes."""
    for name, data in files.items():
        with atomic_path(run_dir / name) as tmp:
            tmp.write_bytes(data)
    marker, other = (DONE, FAILED) if record["status"] == "done" else (FAILED, DONE)
    (run_dir / other).unlink(missing_ok=True)
    write_json_atomic(run_dir / marker, record)


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


def summarise(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per arm over finished runs."""
    if metric not in table.columns:
        raise KeyError(f"no column {metric!r} in the results (columns: {', '.join(table.columns)})")
    done = table[table["status"] == "done"]
    return done.groupby("arm", sort=False)[metric].agg(["mean", "std", "count"]).rename(columns={"count": "n"})


# --------------------------------------------------------------------------- provenance

def sweep_provenance(grid_path: Path, command: str) -> dict[str, str]:
    """What the sweep's machine knows of every run: the commit of the grid's checkout and the command."""
    return {"commit": _git_commit(grid_path.parent), "command": command}


def machine_provenance() -> dict[str, str]:
    """What the machine that ran a run adds to its record: which machine, and its versions."""
    return {"machine": f"{platform.node()} | {cpu_name()} | {cores()} cpus", "python": platform.python_version(),
            "papermill": _version("papermill"), "torch": _version("torch")}


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


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the host's
    except AttributeError:
        return os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)  # without importing it: torch alone takes seconds
    except metadata.PackageNotFoundError:
        return ""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
