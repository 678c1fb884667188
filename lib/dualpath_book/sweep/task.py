"""The task of one run, on a Dask worker: execute its notebook there and give back what the sweep
keeps of it (see :mod:`.execution`)."""
from __future__ import annotations

import json
import re
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from dualpath.errors import DualPathError
from dualpath.io import write_json_atomic

from ..layout import REPO_ROOT
from ..notebook_run import run_notebook
from .plan import Run, run_status
from .results import DONE, LOG, STARTED, machine_provenance, now, read_metrics

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOG_TAIL_LINES = 40


class RunFailed(Exception):
    """A run's notebook failed; ``outcome``: the worker's side of its record, with the error."""

    def __init__(self, outcome: dict[str, Any]):
        super().__init__(outcome["error"])
        self.outcome = outcome

    def __reduce__(self):   # a task's exception travels pickled to the sweep
        return RunFailed, (self.outcome,)


def execute_run(run: Run, checkout: str, topic: str, *sources: Any) -> dict[str, Any]:
    """The task of one run, on a worker: execute its notebook in its folder here and return the
    worker's side of its record with the files the grid keeps (``files``). ``checkout``: the
    repository of the sweep's machine; ``sources``: the results of the runs this one starts from,
    passed only so that Dask runs it after them. Raises :class:`RunFailed` when the notebook fails."""
    from distributed import Event, get_client, get_worker

    run = run.rebased(Path(checkout), REPO_ROOT)
    state = run_status(run)
    if state == "done":   # Dask reran a task whose result was lost with its worker: the run is done
        return json.loads((run.dir / DONE).read_text())
    resuming = state == "interrupted"
    if not resuming:
        shutil.rmtree(run.dir, ignore_errors=True)
        run.dir.mkdir(parents=True)
        write_json_atomic(run.dir / STARTED, {"params": run.arm.params, "notebook": run.arm.notebook_label,
                                              "started_at": now()})
    get_worker().log_event(topic, f"{run.label}: started")
    stop = Event(f"{topic}-stop", client=get_client())
    started_at, t0 = now(), time.monotonic()
    error = _execute_notebook(run, append=resuming, stopped=stop.is_set)
    outcome: dict[str, Any] = {"wall_s": round(time.monotonic() - t0, 2), "started_at": started_at,
                               "resumed": resuming, **machine_provenance()}
    if error is None:
        try:
            outcome["metrics"] = read_metrics(run.dir / run.metrics)
            outcome["files"] = {name: _returned(run.dir / name) for name in (run.metrics, *run.returns)}
        except DualPathError as e:
            error = str(e)
    outcome["finished_at"] = now()
    if error is not None:
        raise RunFailed({**outcome, "error": error, "log_tail": _log_tail(run.dir / LOG)})
    return outcome


def _execute_notebook(run: Run, append: bool, stopped: Callable[[], bool]) -> str | None:
    """Papermill in this thread, the kernel's output into the run's log; the error, or None."""
    from papermill.exceptions import PapermillExecutionError

    with open(run.dir / LOG, "a" if append else "w") as log_file:
        try:
            run_notebook(run.arm.notebook, run.output_notebook, run.parameters(), log_output=False,
                         output_file=log_file, stopped=stopped)
            return None
        except PapermillExecutionError as e:
            log_file.write(_ANSI.sub("", "\n".join(e.traceback)) + "\n")
            error = f"{e.ename}: {e.evalue}"
        except Exception as e:  # kernel death, unreadable notebook, ...: report, don't hide
            traceback.print_exc(file=log_file)
            error = f"{type(e).__name__}: {e}"
        log_file.write(error + "\n")
        return error


def _returned(path: Path) -> bytes:
    if not path.is_file():
        raise DualPathError(f"the notebook finished but wrote no {path.name} in its run_dir {path.parent}")
    return path.read_bytes()


def _log_tail(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [ln.rstrip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return lines[-_LOG_TAIL_LINES:]
