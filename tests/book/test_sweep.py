"""Tests of dualpath_book.sweep on a tiny notebook (tests/book/fixtures/sweep_notebook.ipynb).

Each executed notebook costs a kernel start (~2-3 s), so the sweeps here are small
and one sweep (module fixture) serves several tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dualpath.errors import ConfigError, DualPathError
from dualpath_book.sweep import DONE, FAILED, STARTED, aggregate, load_grid, main, plan_runs, run_status, run_sweep, summarise

NOTEBOOK = Path(__file__).parent / "fixtures" / "sweep_notebook.ipynb"
LIB = Path(__file__).resolve().parents[2] / "lib"


def write_grid(folder: Path, arms: list[dict], **top) -> Path:
    grid = {"name": "g", "notebook": str(NOTEBOOK), "seeds": [0, 1], "arms": arms, **top}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep: arms low (value 1) and broken (raises); seeds 0 and 1."""
    root = tmp_path_factory.mktemp("sweep")
    grid = write_grid(root, [{"name": "low", "params": {"value": 1.0}}, {"name": "broken", "params": {"fail": True}}])
    lines: list[str] = []
    table = run_sweep(grid, root / "out", jobs=2, log=lines.append)
    return grid, root / "out" / "g", table, lines


def test_sweep_runs_every_arm_and_seed_and_aggregates_metrics(swept):
    _, grid_dir, table, lines = swept
    assert len(table) == 4
    done = table[table["status"] == "done"].set_index(["arm", "seed"])
    assert done["score"].to_dict() == {("low", 0): 10.0, ("low", 1): 11.0}
    assert done["nested.a"].tolist() == [1, 1]  # nested metric dicts become dotted columns
    assert done["param_value"].tolist() == [1.0, 1.0]
    for column in ("grid", "wall_s", "commit", "machine", "command", "finished_at", "papermill"):
        assert column in table.columns and table[column].notna().all(), column
    # results.csv is the same table
    on_disk = pd.read_csv(grid_dir / "results.csv")
    assert list(on_disk.columns) == list(table.columns)
    assert on_disk["score"].dropna().sum() == 21.0
    assert (grid_dir / "grid.yaml").is_file()
    assert sum("started" in line for line in lines) == 4 and "results:" in lines[-1]

    summary = summarise(table, "score")
    assert summary.loc["low", "mean"] == 10.5 and summary.loc["low", "n"] == 2
    assert summary.loc["low", "std"] == pytest.approx(0.7071, abs=1e-4)
    assert "broken" not in summary.index  # failed runs have no metrics to average


def test_each_run_has_its_folder_and_the_kernel_is_this_interpreter(swept):
    _, grid_dir, _, _ = swept
    run = grid_dir / "low" / "seed1"
    assert {"DONE.json", "metrics.json", "papermill.log", "sweep_notebook.ipynb"} <= {p.name for p in run.iterdir()}
    env = json.loads((run / "env.json").read_text())
    assert env["executable"] == sys.executable
    assert env["omp"] == env["mkl"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert Path(env["cwd"]) == NOTEBOOK.parent  # notebooks run from their own folder
    done = json.loads((run / DONE).read_text())
    assert done["status"] == "done" and done["params"] == {"value": 1.0} and done["seed"] == 1


def test_a_failing_arm_is_recorded_and_the_others_finish(swept):
    _, grid_dir, table, lines = swept
    failed = json.loads((grid_dir / "broken" / "seed0" / FAILED).read_text())
    assert failed["status"] == "failed"
    assert failed["error"] == "ValueError: asked to fail (seed 0)"
    assert any("raise ValueError" in line for line in failed["log_tail"])
    assert not (grid_dir / "broken" / "seed0" / DONE).exists()
    assert (table[table["arm"] == "broken"]["status"] == "failed").all()
    assert (table[table["arm"] != "broken"]["status"] == "done").all()
    assert any("broken seed1: failed" in line for line in lines)


def test_cli_exit_code_is_nonzero_when_a_run_failed(swept, capsys):
    grid, grid_dir, _, _ = swept
    assert main([str(grid), "--out", str(grid_dir.parent), "--no-retry-failed"]) == 1
    out = capsys.readouterr().out
    assert out.count("skipped") == 4 and str(grid_dir / "results.csv") in out
    assert main([str(grid), "--out", str(grid_dir.parent), "--only", "low"]) == 0


def test_rerun_skips_finished_runs_retries_failed_and_spots_changed_arms(swept):
    grid, grid_dir, _, _ = swept
    notebooks = {p: p.stat().st_mtime_ns for p in grid_dir.glob("*/seed*/sweep_notebook.ipynb")}

    lines: list[str] = []
    run_sweep(grid, grid_dir.parent, jobs=2, retry_failed=False, log=lines.append)
    assert not any("started" in line for line in lines)
    assert {p: p.stat().st_mtime_ns for p in notebooks} == notebooks

    lines.clear()  # the default retries failed runs only
    run_sweep(grid, grid_dir.parent, jobs=2, log=lines.append)
    assert sorted(line.split(": ")[0] for line in lines if line.endswith("started")) == \
        ["[3/4] broken seed0", "[4/4] broken seed1"]
    for path in grid_dir.glob("low/seed*/sweep_notebook.ipynb"):
        assert path.stat().st_mtime_ns == notebooks[path]

    # a changed parameter makes that arm's finished runs stale: the next sweep redoes them
    spec = yaml.safe_load(grid.read_text())
    spec["arms"][0]["params"]["value"] = 3.0
    grid.write_text(yaml.safe_dump(spec))
    states = {(r.arm.name, r.seed): run_status(r) for r in plan_runs(load_grid(grid), grid_dir.parent)}
    assert states == {("low", 0): "stale", ("low", 1): "stale", ("broken", 0): "failed", ("broken", 1): "failed"}


def test_kill_mid_sweep_then_resume_completes_every_run_exactly_once(tmp_path):
    ledger, release = tmp_path / "ledger.txt", tmp_path / "release"
    grid = write_grid(tmp_path, [{"name": "fast"}, {"name": "slow", "params": {"wait_for": str(release)}}],
                      seeds=[0], base={"ledger": str(ledger)})
    grid_dir = tmp_path / "out" / "g"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(LIB), os.environ.get("PYTHONPATH")])))
    cli = [sys.executable, "-m", "dualpath_book.sweep", str(grid), "--out", str(tmp_path / "out"), "--jobs", "2"]

    first = subprocess.Popen(cli, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        # with two jobs, fast and slow start together; kill once fast is done and slow waits
        ready = [grid_dir / "slow" / "seed0" / "waiting", grid_dir / "fast" / "seed0" / DONE]
        deadline = time.monotonic() + 90
        while not all(p.exists() for p in ready):
            assert first.poll() is None and time.monotonic() < deadline, "slow runs never started"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    fast_notebooks = {p: p.stat().st_mtime_ns for p in grid_dir.glob("fast/seed*/sweep_notebook.ipynb")}
    assert len(fast_notebooks) == 1
    # kernels notice their parent's death within ~1 s; leftovers would append to the ledger once released
    time.sleep(2)
    release.touch()

    second = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fast seed0: skipped (done earlier)" in second.stdout
    assert "slow seed0: resuming (interrupted earlier)" in second.stdout
    # resumed in its own folder (a notebook that resumes keeps its checkpoints), its log appended
    assert (grid_dir / "slow" / "seed0" / "starts").read_text().split() == ["start", "start"]
    assert (grid_dir / "fast" / "seed0" / "starts").read_text().split() == ["start"]
    assert json.loads((grid_dir / "slow" / "seed0" / DONE).read_text())["resumed"] is True
    runs = sorted(grid_dir.glob("*/seed*"))
    assert len(runs) == 2 and all((run / DONE).is_file() for run in runs)
    assert sorted(ledger.read_text().split()) == sorted(str(run) for run in runs)  # each exactly once
    assert {p: p.stat().st_mtime_ns for p in fast_notebooks} == fast_notebooks
    results = pd.read_csv(grid_dir / "results.csv")
    assert len(results) == 2 and (results["status"] == "done").all()
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_unfinished_folder_of_other_settings_is_redone_from_scratch(tmp_path):
    grid = write_grid(tmp_path, [{"name": "a", "params": {"value": 2.0}}], seeds=[0])
    run_dir = tmp_path / "out" / "g" / "a" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "starts").write_text("start\n")
    (run_dir / STARTED).write_text(json.dumps({"params": {"value": 1.0}, "notebook": "x"}))
    run = plan_runs(load_grid(grid), tmp_path / "out")[0]
    assert run_status(run) == "partial"
    lines: list[str] = []
    table = run_sweep(grid, tmp_path / "out", log=lines.append)
    assert any("redoing (unfinished, settings unknown)" in line for line in lines)
    assert (run_dir / "starts").read_text().split() == ["start"]      # the old folder was wiped
    assert table["score"].tolist() == [20.0] and not table["resumed"].any()


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    grid = write_grid(tmp_path, [{"name": "a"}])
    (tmp_path / "out" / "g").mkdir(parents=True)
    with open(tmp_path / "out" / "g" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DualPathError, match="another sweep is running"):
            run_sweep(grid, tmp_path / "out", log=lambda line: None)


def test_aggregate_of_an_empty_folder_is_an_empty_table(tmp_path):
    assert aggregate(tmp_path).empty and (tmp_path / "results.csv").is_file()


def test_aggregated_metrics_carry_no_float_noise(tmp_path):
    run = tmp_path / "arm" / "seed0"
    run.mkdir(parents=True)
    (run / DONE).write_text(json.dumps({"grid": "g", "arm": "arm", "seed": 0, "status": "done",
                                        "metrics": {"rsum": 234.90000000000003, "i2t_r1": 1.0999999999999999,
                                                    "stage1.rsum": 6.0}}))
    aggregate(tmp_path)
    text = (tmp_path / "results.csv").read_text()
    assert "234.9," in text and "1.1," in text and "0000000" not in text and "9999999" not in text


@pytest.mark.parametrize("change, key, message", [
    ({"epochs": 3}, "epochs", "unknown key"),
    ({"arms": [{"name": "a", "parms": {}}]}, "arms[0].parms", "unknown key"),
    ({"notebook": "missing.ipynb"}, "notebook", "not found"),
    ({"arms": [{"name": "a"}, {"name": "a"}]}, "arms[1].name", "duplicate arm name"),
    ({"seeds": [0, "1"]}, "seeds[1]", "expected int"),
    ({"seeds": [True]}, "seeds[0]", "expected int"),
    ({"arms": [{"name": "../up"}]}, "arms[0].name", "not a safe folder name"),
    ({"arms": [{"name": "a", "params": {"valu": 2}}]}, "arms[0].params.valu", "declares no parameter 'valu'"),
    ({"base": {"seed": 3}}, "base.seed", "reserved"),
    ({"arms": []}, "arms", "at least one arm"),
    ({"metrics": "../m.json"}, "metrics", "relative to the run folder"),
    ({"returns": ["ranks.npz", "/abs.npz"]}, "returns[1]", "relative to the run folder"),
])
def test_bad_grids_name_the_file_and_the_key(tmp_path, change, key, message):
    spec = {"name": "g", "notebook": str(NOTEBOOK), "seeds": [0], "arms": [{"name": "a"}], **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as caught:
        load_grid(path)
    assert str(path) in str(caught.value) and f"'{key}'" in str(caught.value)
    assert message in str(caught.value)


def test_notebook_paths_resolve_beside_the_grid_file(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "x.ipynb").write_bytes(NOTEBOOK.read_bytes())
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"notebook": "nb/x.ipynb", "arms": [{"name": "a"}]}))
    grid = load_grid(path)
    assert grid.name == "grid" and grid.seeds == (0,) and grid.arms[0].notebook == tmp_path / "nb" / "x.ipynb"

