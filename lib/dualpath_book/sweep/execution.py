"""Running a sweep on Dask: each (arm, seed) is one task, on this machine or on any Dask cluster.

Where the runs go:

* by default a ``LocalCluster`` on this machine: ``jobs`` worker processes of one thread each, so
  ``jobs`` runs at a time, whose kernels get cores / ``jobs`` torch threads (``OMP_NUM_THREADS``);
* ``scheduler`` (CLI ``--scheduler``, or Dask's own ``DASK_SCHEDULER_ADDRESS``): the scheduler of
  an existing cluster (``dask scheduler`` + ``dask worker``, dask-jobqueue, Kubernetes ...). Its
  workers decide how many runs go at once (one per worker thread), and a run's kernel inherits its
  worker's environment (start workers with ``OMP_NUM_THREADS`` set: Dask's default is 1).

``resources`` (``{"GPU": 1}``) is what every run asks of its worker, so a worker started with
``--resources GPU=1`` trains one run at a time; the local cluster's workers offer exactly that.

A run that starts from another (``"@<arm>"``) is submitted with that run's task as a dependency;
Dask starts it once its source is done, and never when the source failed (it waits for a later
sweep). Tasks are prioritised in grid order.

What a task does and gives back (:func:`.task.execute_run`): it executes the notebook on its worker, in
the run's folder there (the same path; inside the repository, the same place in the worker's
checkout), and returns the worker's side of the run's record (wall time, machine, versions,
metrics) with the files the grid keeps (``metrics``, ``returns``). The sweep writes those into its
own run folder and rewrites ``results.csv`` as each run finishes, so nothing assumes a shared disk.
Checkpoints stay where the run executed. A notebook that raises fails its task with
:class:`.task.RunFailed`, recorded in ``FAILED.json`` with its error and the tail of its log; the other
runs go on. A worker lost mid-run: Dask runs the task again on another worker (up to
``distributed.scheduler.allowed-failures`` times); with a shared run folder it resumes from the
run's checkpoints like an interrupted run. Ctrl-C (or SIGTERM to the CLI): the running notebooks'
kernels are killed and nothing more is written; their folders keep ``STARTED.json``, so the next
sweep resumes them.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pandas as pd

from dualpath.errors import ConfigError, DualPathError
from dualpath.io import write_text_atomic

from ..layout import REPO_ROOT
from .grid import load_grid
from .plan import Log, Run, copy_same_run, plan_runs, restore_runs, should_run
from .results import DONE, LOG, RESULTS, aggregate, cores, sweep_provenance, write_record
from .task import RunFailed, execute_run

if TYPE_CHECKING:
    from distributed import Client, Future

GRID_COPY = "grid.yaml"
CONNECT_TIMEOUT_S = 5   # a scheduler address that does not answer fails the sweep after this long


def run_sweep(grid_path: str | os.PathLike, out_root: str | os.PathLike, jobs: int | None = None,
              only: Sequence[str] | None = None, retry_failed: bool = True, log: Log = print,
              command: str | None = None, restore: str | os.PathLike | None = None,
              scheduler: str | None = None, resources: dict[str, float] | None = None) -> pd.DataFrame:
    """Run every pending run of a grid and return :func:`aggregate`'s table.

    Finished runs are skipped; failed runs are retried unless ``retry_failed`` is False;
    interrupted runs continue in their folder when their settings are unchanged and are redone
    otherwise. A failing run never stops the others. ``jobs``: runs at a time on the local cluster
    (default 1); ``scheduler``, ``resources``: see the module's docstring. ``restore``: a folder of
    committed results tables (see :mod:`.plan`); ``results.csv`` is rewritten after every run.
    """
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    resources = dict(resources or {})
    if any(not isinstance(v, (int, float)) or v <= 0 for v in resources.values()):
        raise ConfigError(f"resources must be positive amounts, e.g. {{'GPU': 1}}; got {resources}")
    grid = load_grid(grid_path)
    runs = plan_runs(grid, out_root, only)
    grid_dir = Path(out_root).resolve() / grid.name
    command = command or (f"run_sweep({str(grid_path)!r}, {str(out_root)!r}, jobs={jobs}, "
                          f"only={list(only) if only else None}, retry_failed={retry_failed}, "
                          f"restore={str(restore) if restore is not None else None!r}, "
                          f"scheduler={scheduler!r}, resources={resources or None})")
    log = _serialised(log)
    with _exclusive(grid_dir):
        for stray in grid_dir.glob(".*.tmp"):  # left by a sweep killed while writing results.csv
            stray.unlink()
        write_text_atomic(grid_dir / GRID_COPY, grid.path.read_text())
        if restore is not None:
            restore_runs(runs, restore, log)
        todo = [run for run in runs if should_run(run, retry_failed, log)]
        # aliases of runs done already are copied now, the others as soon as their run is done
        # (so results.csv has them from then on)
        aliases = [r for r in todo if r.arm.same_as is not None and not copy_same_run(r, log)]
        executed = [r for r in todo if r.arm.same_as is None]
        try:
            if executed:
                recorder = _Recorder(grid_dir, sweep_provenance(grid.path, command), aliases, log)
                with dask_client(scheduler, jobs, resources, log) as client:
                    _execute(client, executed, recorder.record, resources, log)
            for run in aliases:   # their runs are not done: say so
                copy_same_run(run, log, quiet=False)
        finally:   # interrupted too: the table holds every run recorded so far
            table = aggregate(grid_dir)
    log(f"results: {grid_dir / RESULTS}  ({_status_counts(table, {r.arm.name for r in runs})})")
    return table


@contextmanager
def dask_client(scheduler: str | None, jobs: int | None, resources: dict[str, float], log: Log) -> Iterator[Client]:
    """A client of the cluster at ``scheduler`` (or Dask's configured ``scheduler-address``), else
    of a local cluster of ``jobs`` single-threaded workers that lives as long as the client."""
    import dask
    from distributed import Client, LocalCluster

    address = scheduler or dask.config.get("scheduler-address", None)
    if address:
        if jobs is not None:
            log(f"--jobs {jobs} sizes the local cluster only: the workers at {address} decide how many runs go at once")
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise DualPathError(f"no Dask scheduler answers at {address} ({e}); start one (`dask scheduler`) "
                                f"or correct --scheduler / DASK_SCHEDULER_ADDRESS") from None
        with client:
            _say_workers(client, address, resources, log)
            yield client
        return
    jobs = jobs or 1
    threads = str(max(1, cores() // jobs))
    lib = str(Path(__file__).resolve().parents[2])   # the kernels import this very package, installed or not
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p)}
    # without this, Dask's nannies would set their numpy defaults (one thread, an eager malloc trim)
    # in this process and in every kernel
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
        # the scheduler's web server (a dashboard where bokeh is installed) on a free port of this
        # machine only: two sweeps at once must not compete for Dask's default 8787
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", resources=resources or None, env=env,
                               silence_logs=logging.ERROR)
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


def _say_workers(client: Client, address: str, resources: dict[str, float], log: Log) -> None:
    workers = client.scheduler_info()["workers"].values()
    able = [w for w in workers if all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items())]
    asked = " ".join(f"{k}={v:g}" for k, v in resources.items())
    log(f"cluster {address}: {len(workers)} worker(s), {len(able)} of them able to take a run"
        + (f" ({asked})" if asked else ""))
    if not able:
        log(f"the runs wait until a worker joins: `dask worker {address}"
            + (f" --resources {asked}`" if asked else "`"))


def _execute(client: Client, runs: list[Run], record: Callable[[Run, dict], None], resources: dict[str, float],
             log: Log) -> None:
    """Submit each run as a task (after the tasks of the runs it starts from) and record each
    result as it comes; on any interruption stop the running notebooks and cancel the rest."""
    from distributed import Event, as_completed

    topic = f"dualpath-sweep-{uuid.uuid4().hex}"   # this sweep's events, whoever else uses the cluster
    client.subscribe_topic(topic, lambda event: log(event[1]))
    tasks: dict[Path, Future] = {}
    run_of: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: bool(r.arm.needs)):   # the runs that start from others last
        missing = [a for a in run.arm.needs if run.sibling(a) not in tasks and not (run.sibling(a) / DONE).is_file()]
        if missing:
            _say_waiting(run, missing, log)
            continue
        sources = [tasks[run.sibling(a)] for a in run.arm.needs if run.sibling(a) in tasks]
        key = f"{run.grid}/{run.arm.name}/seed{run.seed}-{topic[-8:]}"
        tasks[run.dir] = client.submit(execute_run, run, str(REPO_ROOT), topic, *sources, key=key,
                                       priority=-run.index, resources=resources or None)
        run_of[key] = run
    try:
        for task in as_completed(list(tasks.values()), loop=client.loop):
            run = run_of[task.key]
            failed_sources = [a for a in run.arm.needs
                              if run.sibling(a) in tasks and tasks[run.sibling(a)].status == "error"]
            if task.status == "finished":
                record(run, task.result())
            elif failed_sources:   # Dask fails a task whose source failed: it never ran
                _say_waiting(run, failed_sources, log)
            else:
                error = task.exception()
                record(run, error.outcome if isinstance(error, RunFailed)
                       else {"error": f"{type(error).__name__}: {error}"})
    except BaseException:
        with suppress(Exception):   # the scheduler may be gone already
            Event(f"{topic}-stop", client=client).set()   # running notebooks: see execute_run
            client.cancel(list(tasks.values()))
        raise
    finally:
        client.unsubscribe_topic(topic)


def _say_waiting(run: Run, arms: list[str], log: Log) -> None:
    log(f"{run.label}: waiting (needs {', '.join(arms)} seed{run.seed} done first)")


class _Recorder:
    """The sweep's side of each finished run: its record and files in its folder here, the
    ``same_as`` arms it settles, ``results.csv``, then the log line (so a reader of the line finds
    all of it written)."""

    def __init__(self, grid_dir: Path, provenance: dict[str, str], aliases: list[Run], log: Log):
        self.grid_dir, self.provenance, self.aliases, self.log = grid_dir, provenance, aliases, log

    def record(self, run: Run, outcome: dict[str, Any]) -> None:
        files = outcome.pop("files", {})
        status = "failed" if "error" in outcome else "done"
        write_record(run.dir, {**run.record(), **self.provenance, **outcome, "status": status}, files)
        if status == "done":
            for alias in [a for a in self.aliases if a.sibling(a.arm.same_as) == run.dir]:
                copy_same_run(alias, self.log)
                self.aliases.remove(alias)
        aggregate(self.grid_dir)   # the table is current while the sweep runs: commit results as they come
        took = f" in {outcome['wall_s']:.1f} s" if "wall_s" in outcome else ""
        if status == "done":
            self.log(f"{run.label}: done{took}")
        else:
            where = f"  (log: {run.dir / LOG} on {outcome['machine'].split(' | ')[0]})" if "machine" in outcome else ""
            self.log(f"{run.label}: failed{took}: {outcome['error']}{where}")


def _status_counts(table: pd.DataFrame, arms: set[str]) -> str:
    if not len(table):
        return "no runs"
    counts = table[table["arm"].isin(arms)]["status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _serialised(log: Log) -> Log:
    """The sweep's thread and Dask's (the workers' events) share one log; keep their lines whole."""
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
