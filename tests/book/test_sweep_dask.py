"""The sweep on real Dask clusters: a ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1
run the smoke grid (the arm notebook on the mini splits) with the metrics of the default local
cluster, also when a worker is killed mid-run; Ctrl-C stops the running notebooks and leaves
nothing half-written; a scheduler that does not answer fails the sweep in seconds."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pytest

from dualpath.errors import ConfigError
from dualpath_book.sweep import DONE, FAILED, STARTED, record_from_row, run_sweep
from dualpath_book.sweep.cli import parse_resources
from test_sweep import write_grid

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "grids" / "smoke.yaml"
THREADS = str(max(1, len(os.sched_getaffinity(0)) // 2))   # what the local cluster of --jobs 2 gives a run


def environment(tmp: Path) -> dict[str, str]:
    """The sweeps', schedulers' and workers' environment: this checkout's package, one feature cache."""
    return dict(os.environ, DUALPATH_CACHE=str(tmp / "cache"), DUALPATH_RUNS=str(tmp / "runs"),
                OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS,
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])))


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {seconds:.0f} s"
        time.sleep(0.2)


@contextmanager
def dask_cluster(folder: Path, env: dict[str, str], workers: int = 2) -> Iterator[tuple[str, list]]:
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes (resources
    GPU=1) on 127.0.0.1, each in its own process group; every one of them is killed at the end."""
    dask = [sys.executable, "-m", "dask"]
    scheduler_file = folder / "scheduler.json"
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        with open(folder / f"dask-{len(started)}.log", "w") as log:
            started.append(subprocess.Popen([*dask, *args], env=env, cwd=folder, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True))
        return started[-1]
    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))
        wait_until(scheduler_file.is_file, 60, "the scheduler's address")
        address = json.loads(scheduler_file.read_text())["address"]
        procs = [start("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard",
                       "--resources", "GPU=1", "--name", f"w{i}", "--death-timeout", "30",
                       "--local-directory", str(folder / f"w{i}")) for i in range(workers)]
        from distributed import Client
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, procs
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def sweep_cli(out: Path, *args: str, grid: Path = SMOKE) -> list[str]:
    return [sys.executable, "-m", "dualpath_book.sweep", str(grid), "--out", str(out), *args]


def _interruptible() -> None:
    """SIGINT back to its default in the child: a test suite started in the background of a script
    (``make test &``) inherits SIGINT ignored, and a Python started so never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def in_background(command: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A sweep started in the background (its output in ``.stdout``), killed at the end if still running."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_interruptible)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def metrics_of(results: Path) -> dict[tuple[str, int], dict]:
    """Every run's metrics but its training seconds, from a results.csv."""
    table = pd.read_csv(results)
    assert (table["status"] == "done").all(), table[["arm", "seed", "status"]]
    return {(r["arm"], int(r["seed"])): {k: v for k, v in record_from_row(r)["metrics"].items() if k != "train_s"}
            for _, r in table.iterrows()}


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory) -> dict[str, str]:
    return environment(tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def local_metrics(smoke_env, tmp_path_factory) -> dict:
    """The smoke grid on the default local cluster (two workers): the metrics every cluster must give."""
    out = tmp_path_factory.mktemp("local")
    done = subprocess.run(sweep_cli(out, "--jobs", "2"), env=smoke_env, cwd=out,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list(out.rglob("*.tmp"))
    return metrics_of(out / "smoke" / "results.csv")


@pytest.fixture(scope="module")
def cluster(smoke_env, tmp_path_factory) -> Iterator[tuple[str, list]]:
    with dask_cluster(tmp_path_factory.mktemp("cluster"), smoke_env) as running:
        yield running


@pytest.mark.slow
def test_the_smoke_grid_on_a_dask_cluster_gives_the_local_clusters_metrics(cluster, smoke_env, local_metrics, tmp_path):
    address, _ = cluster
    done = subprocess.run(sweep_cli(tmp_path, "--scheduler", address, "--resources", "GPU=1"),
                          env=smoke_env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"cluster {address}: 2 worker(s), 2 of them able to take a run (GPU=1)" in done.stdout
    assert metrics_of(tmp_path / "smoke" / "results.csv") == local_metrics
    # what came back from the workers: each run's record, metrics and per-query test ranks
    for run in (tmp_path / "smoke").glob("*/seed*"):
        assert {DONE, "arm_metrics.json", "test_ranks.npz"} <= {p.name for p in run.iterdir()}


@pytest.mark.slow
def test_a_worker_killed_mid_run_its_run_resumes_on_another_and_the_grid_completes(smoke_env, local_metrics, tmp_path):
    from distributed import Client

    out = tmp_path / "out"
    with dask_cluster(tmp_path, smoke_env) as (address, workers), \
            Client(address, timeout=30, set_as_default=False) as client:
        with in_background(sweep_cli(out, "--scheduler", address), smoke_env, tmp_path) as sweep:
            # once a run has a checkpoint, kill the worker running it (its nanny too: the worker is lost)
            checkpointed = lambda: [p.parent for p in out.glob("smoke/*/seed*/last.pt")
                                    if not (p.parent / DONE).exists()]
            wait_until(lambda: bool(checkpointed()) or sweep.poll() is not None, 900, "a checkpoint")
            assert sweep.poll() is None, sweep.stdout.read()[-3000:]
            victim = checkpointed()[0]
            prefix = f"smoke/{victim.parent.name}/{victim.name}-"
            names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
            (worker,) = [names[addr] for addr, keys in client.processing().items()
                         if any(str(k).startswith(prefix) for k in keys)]
            os.killpg(workers[int(worker[1:])].pid, signal.SIGKILL)
            output, _ = sweep.communicate(timeout=1800)
    assert sweep.returncode == 0, output[-3000:]
    assert metrics_of(out / "smoke" / "results.csv") == local_metrics
    record = json.loads((victim / DONE).read_text())
    assert record["resumed"] is True   # retried on the other worker, in its folder, from its checkpoint
    assert (victim / "papermill.log").read_text().count(f"run_dir {victim}") == 2   # both starts, one log


def fast_and_slow(folder: Path) -> tuple[Path, Path, Path]:
    """A grid of a run that finishes and one that waits for a file; returns it, the file and a ledger
    to which each run writes its folder once its work is done."""
    ledger, release = folder / "ledger.txt", folder / "release"
    grid = write_grid(folder, [{"name": "fast"}, {"name": "slow", "params": {"wait_for": str(release)}}],
                      seeds=[0], base={"ledger": str(ledger)})
    return grid, release, ledger


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "cluster"])
def test_ctrl_c_stops_the_running_notebooks_and_leaves_nothing_half_written(where, request, tmp_path):
    env = environment(tmp_path)
    grid, release, ledger = fast_and_slow(tmp_path)
    args = ["--jobs", "2"] if where == "local" else ["--scheduler", request.getfixturevalue("cluster")[0]]
    grid_dir = tmp_path / "out" / "g"
    with in_background(sweep_cli(tmp_path / "out", *args, grid=grid), env, tmp_path) as sweep:
        ready = [grid_dir / "slow" / "seed0" / "waiting", grid_dir / "fast" / "seed0" / DONE]
        wait_until(lambda: all(p.exists() for p in ready) or sweep.poll() is not None, 120, "the runs")
        sweep.send_signal(signal.SIGINT)
        output, _ = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "interrupted: the next sweep resumes unfinished runs" in output, output
    results = pd.read_csv(grid_dir / "results.csv")
    assert list(zip(results["arm"], results["status"])) == [("fast", "done")]
    assert (grid_dir / "slow" / "seed0" / STARTED).is_file()
    assert not any((grid_dir / "slow" / "seed0" / m).exists() for m in (DONE, FAILED))
    assert not list(tmp_path.rglob("*.tmp"))
    time.sleep(4)   # a notebook asks every 2 s whether to stop; a live one would write the ledger now
    release.touch()
    time.sleep(3)
    assert ledger.read_text().split() == [str(grid_dir / "fast" / "seed0")]
    again = subprocess.run(sweep_cli(tmp_path / "out", *args, grid=grid), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "slow seed0: resuming (interrupted earlier)" in again.stdout, again.stdout


@pytest.mark.parametrize("given_by", ["--scheduler", "DASK_SCHEDULER_ADDRESS"])
def test_a_scheduler_that_does_not_answer_fails_in_seconds_naming_it(given_by, tmp_path):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    grid, _, _ = fast_and_slow(tmp_path)
    env = environment(tmp_path)
    args = ["--scheduler", address] if given_by == "--scheduler" else []
    if given_by == "DASK_SCHEDULER_ADDRESS":
        env[given_by] = address
    t0 = time.monotonic()
    failed = subprocess.run(sweep_cli(tmp_path / "out", *args, grid=grid), env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 30   # the CLI's imports and a 5 s wait for the scheduler
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert f"error: no Dask scheduler answers at {address}" in failed.stderr and "dask scheduler" in failed.stderr
    assert not list((tmp_path / "out" / "g").glob("*/seed*"))   # nothing ran, nothing written


def test_resources_are_names_with_positive_amounts(tmp_path):
    assert parse_resources("GPU=1,MEMORY=8e9") == parse_resources("GPU=1 MEMORY=8e9") == {"GPU": 1.0, "MEMORY": 8e9}
    assert parse_resources(None) == {}
    for bad in ("GPU", "GPU=one", "=1"):
        with pytest.raises(ConfigError, match="is not NAME=AMOUNT"):
            parse_resources(bad)
    grid, _, _ = fast_and_slow(tmp_path)
    with pytest.raises(ConfigError, match="positive amounts"):
        run_sweep(grid, tmp_path / "out", resources={"GPU": 0}, log=lambda line: None)


def test_a_run_moves_with_the_checkout_a_worker_has_elsewhere(tmp_path):
    from dualpath_book.sweep import load_grid, plan_runs

    grid = write_grid(tmp_path, [{"name": "a"}], seeds=[0])
    (run,) = plan_runs(load_grid(grid), tmp_path / "out")
    moved = run.rebased(tmp_path, Path("/elsewhere/clone"))
    assert moved.dir == Path("/elsewhere/clone/out/g/a/seed0")
    assert moved.arm.notebook == run.arm.notebook   # outside the checkout: the same path everywhere
    assert moved.parameters()["run_dir"] == str(moved.dir)


def test_the_stop_watch_ends_quietly_when_its_dask_client_has_closed(monkeypatch):
    """Interrupting a sweep closes the Dask client while a run's stop watch still polls its event:
    distributed then raises AttributeError from inside Event.is_set; the watch ends without a
    traceback and kills nothing (the worker that ends the sweep ends the kernel)."""
    import threading

    from dualpath_book import notebook_run

    monkeypatch.setattr(notebook_run, "_STOP_POLL_S", 0.01)

    def closed_client() -> bool:
        raise AttributeError("'NoneType' object has no attribute 'event_is_set'")

    finished = threading.Event()
    watch = threading.Thread(target=notebook_run._kill_when, args=(closed_client, finished, []))
    watch.start()
    watch.join(timeout=5)
    assert not watch.is_alive()
